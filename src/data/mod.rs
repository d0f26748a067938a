//! The data stage: text to token ids ([`tokenizer`]) and windows ([`corpus`]), the (input,
//! target) counts the exact losses and floors use ([`counts`], [`baseline`]), and donor matrices
//! read from
//! safetensors files ([`donor`]) or downloaded from the Hugging Face Hub ([`hub`]), and a donor's
//! rows mapped onto another tokenizer's vocabulary ([`transplant`]).

pub mod baseline;
pub mod corpus;
pub mod counts;
pub mod donor;
pub mod hub;
pub mod tokenizer;
pub mod transplant;

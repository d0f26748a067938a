#!/usr/bin/env python3
"""Reference for embgraft's vocabulary transplant: a WordPiece donor's rows on GPT-2's vocabulary.

Written apart from embgraft's Rust code, from the rules in issue 31 and README ("Donors with other
tokenizers"): every GPT-2 token is read as text (its bytes as UTF-8, a leading space marking a
word start), put through the donor tokenizer's own normalizer with the `tokenizers` package, and
classed:

  exact     the donor has that very piece (a word start `x`, a continuation `##x`; ASCII
            punctuation in its standalone form): its row, bit for bit;
  pieces    the donor's tokenizer cuts the text into pieces, none of them [UNK]: the mean of
            their rows, summed in float64 and rounded to float32 once;
  fallback  <|endoftext|>, bytes that are no UTF-8 text alone, white space or control
            characters, or text the donor cannot spell: the mean of every donor row.

GPT-2's vocabulary comes from embgraft's built-in BPE (OpenAI's r50k_base file, as tiktoken-rs
carries it), written by an example, so no network is needed:

  cargo run --release --example gpt2_tokens -- /tmp/gpt2_tokens.txt

Two uses:

  python3 reference/transplant_reference.py --gpt2-tokens /tmp/gpt2_tokens.txt
      builds the test's WordPiece donor (its tokenizer.json and rows are in the golden file) and
      writes reference/transplant_golden.json: every GPT-2 token's class, the counts, and a sample
      of ids with their donor pieces and mapped rows. tests/transplant_reference.rs replays it.

  python3 reference/transplant_reference.py --gpt2-tokens /tmp/gpt2_tokens.txt \
      --donor DIR --compare mapped.safetensors
      maps a real donor folder (tokenizer.json and model.safetensors, e.g. the shared MiniLM) and
      compares every class and every row with what `embgraft inspect DIR --tokenizer gpt2
      --write-mapped mapped.safetensors` wrote (bench/transplant_compare.sh runs all three).

Needs: python3 -m pip install tokenizers numpy safetensors
"""
import argparse
import json
import os
import string
import sys
import unicodedata

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

HERE = os.path.dirname(os.path.abspath(__file__))
END_OF_TEXT = 50256
EXACT, PIECES, FALLBACK = 0, 1, 2

# Unicode's White_Space property (PropList.txt), spelled out so this does not lean on Python's
# own idea of a space.
WHITE_SPACE = set(
    [chr(c) for c in range(0x09, 0x0E)]
    + [" ", "\u0085", "\u00a0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)

# The test donor: letters (so most text can be spelled), their continuations, some words of The
# Time Machine, common endings and punctuation.
WORDS = (
    "the of and a to in i was it that he his had my as with at for you but me which this on not "
    "we they be were there so from all by one or have is an said time machine traveller thing "
    "little upon some into then what could would like its no our now about them little people "
    "world great light dark sun face hand eyes night thought saw came began went looked seemed "
    "psychologist medical man weena morlocks sphinx future years white green"
).split() + ["##s", "##ed", "##ing", "##ly", "##er", "##est", "##tion", "##ness"] + list(".,;:!?'\"()-")
DIM = 6


def test_donor():
    """The test's WordPiece donor: its tokenizer and its rows (multiples of 1/128, exact in f32)."""
    vocab = ["[UNK]", "[CLS]"]
    for c in string.ascii_lowercase:
        vocab += [c, "##" + c]
    for w in WORDS:
        if w not in vocab:
            vocab.append(w)
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(["[UNK]", "[CLS]"])
    rows = np.array(
        [[((i * 7919 + c * 104729) % 257) / 128.0 - 1.0 for c in range(DIM)] for i in range(len(vocab))],
        dtype=np.float32,
    )
    return tok, rows


def surface(token_bytes):
    """(text, word start?) of a GPT-2 token, or None when it has no text to map."""
    try:
        text = token_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None
    word = text.startswith(" ")
    rest = text[1:] if word else text
    if not rest or all(c in WHITE_SPACE for c in rest):
        return None
    if any(c in WHITE_SPACE or unicodedata.category(c) == "Cc" for c in rest):
        return None
    return rest, word


def classify(gpt2, tok, rows):
    """Each GPT-2 id's class and donor ids."""
    vocab = tok.get_vocab(with_added_tokens=True)
    unk = vocab["[UNK]"]
    out = []
    for i, b in enumerate(gpt2):
        s = None if i == END_OF_TEXT else surface(b)
        if s is None:
            out.append((FALLBACK, []))
            continue
        text, word = s
        norm = tok.normalizer.normalize_str(text)
        standalone = word or all(c in string.punctuation for c in norm)
        exact = vocab.get(norm if standalone else "##" + norm)
        if exact is not None and exact < len(rows):
            out.append((EXACT, [exact]))
            continue
        ids = tok.encode(text, add_special_tokens=False).ids
        if ids and all(x != unk and x < len(rows) for x in ids):
            out.append((PIECES, ids))
        else:
            out.append((FALLBACK, []))
    return out


def mapped_rows(classes, rows):
    """The mapped matrix: sums in float64 in the pieces' order (row by row for the mean of all)."""
    mean = np.zeros(rows.shape[1], dtype=np.float64)
    for r in rows:
        mean += r.astype(np.float64)
    mean = (mean / len(rows)).astype(np.float32)
    out = np.empty((len(classes), rows.shape[1]), dtype=np.float32)
    for i, (k, src) in enumerate(classes):
        if k == EXACT:
            out[i] = rows[src[0]]
        elif k == PIECES:
            acc = np.zeros(rows.shape[1], dtype=np.float64)
            for s in src:
                acc += rows[s].astype(np.float64)
            out[i] = (acc / len(src)).astype(np.float32)
        else:
            out[i] = mean
    return out


def read_gpt2(path):
    gpt2 = [bytes.fromhex(line.strip()) for line in open(path)]
    # The vocabulary file must be GPT-2's: a few ids known from OpenAI's encoder.json.
    known = {0: b"!", 198: b"\n", 262: b" the", 11: b",", 50256: b"<|endoftext|>"}
    if len(gpt2) != 50257 or any(gpt2[i] != v for i, v in known.items()):
        sys.exit(f"{path} is not GPT-2's vocabulary (50257 tokens, id 262 = ' the')")
    return gpt2


def write_golden(gpt2):
    tok, rows = test_donor()
    classes = classify(gpt2, tok, rows)
    matrix = mapped_rows(classes, rows)
    counts = [sum(1 for k, _ in classes if k == c) for c in (EXACT, PIECES, FALLBACK)]
    sample = sorted(set(range(0, len(gpt2), 97)) | {262, 11, 198, 50256, 3290, 13, 464})
    golden = {
        "about": "reference/transplant_reference.py: the test WordPiece donor mapped onto GPT-2's vocabulary",
        "donor_tokenizer": json.loads(tok.to_str()),
        "dim": DIM,
        "rows": "row i, column c = ((i * 7919 + c * 104729) % 257) / 128 - 1, in f32",
        "counts": counts,
        "classes": "".join(str(k) for k, _ in classes),
        "sample": [
            {"id": i, "class": classes[i][0], "sources": classes[i][1], "row": [float(x) for x in matrix[i]]}
            for i in sample
        ],
    }
    path = os.path.join(HERE, "transplant_golden.json")
    with open(path + ".tmp", "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {path}: exact {counts[0]}, pieces {counts[1]}, fallback {counts[2]}")


def compare(gpt2, donor_dir, mapped_path):
    from safetensors.numpy import load_file

    tok = Tokenizer.from_file(os.path.join(donor_dir, "tokenizer.json"))
    # A sentence-transformers tokenizer.json pads every encoding to 128 with [PAD] and truncates:
    # text is cut into pieces as it is, so both go.
    tok.no_padding()
    tok.no_truncation()
    weights = load_file(os.path.join(donor_dir, "model.safetensors"))
    name = next(n for n in weights if n.endswith("word_embeddings.weight") or n.endswith("wte.weight"))
    rows = weights[name].astype(np.float32)
    classes = classify(gpt2, tok, rows)
    matrix = mapped_rows(classes, rows)
    theirs = load_file(mapped_path)
    want_class = np.array([k for k, _ in classes], dtype=np.uint8)
    class_diff = np.flatnonzero(theirs["class"] != want_class)
    row_diff = np.flatnonzero((theirs["wte"].view(np.uint32) != matrix.view(np.uint32)).any(axis=1))
    counts = [int((want_class == c).sum()) for c in (EXACT, PIECES, FALLBACK)]
    n = len(classes)
    print(
        f"reference: {counts[0]} exact ({100 * counts[0] / n:.1f} %), {counts[1]} pieces ({100 * counts[1] / n:.1f} %), "
        f"{counts[2]} fallback ({100 * counts[2] / n:.1f} %) of {n}"
    )
    print(f"embgraft's mapping differs in {len(class_diff)} classes and {len(row_diff)} rows (bit for bit)")
    for i in list(class_diff[:10]) + list(row_diff[:10]):
        print(f"  id {i} {gpt2[i]!r}: reference class {want_class[i]}, embgraft {theirs['class'][i]}")
    return 0 if len(class_diff) == 0 and len(row_diff) == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpt2-tokens", required=True, help="GPT-2's vocabulary, hex bytes per line")
    p.add_argument("--donor", help="a donor folder to compare instead of writing the golden file")
    p.add_argument("--compare", help="embgraft inspect --write-mapped output for --donor")
    a = p.parse_args()
    gpt2 = read_gpt2(a.gpt2_tokens)
    if a.donor:
        sys.exit(compare(gpt2, a.donor, a.compare))
    write_golden(gpt2)


if __name__ == "__main__":
    main()

// CUDA kernels for Model 1's training step: the device twins of the fused CPU passes in
// src/ops/loss.rs (CrossEntropy) and src/ops/adamw.rs (adamw_update). Compiled to PTX by build.rs
// with --fmad=false, so a*b+c is rounded twice as on the CPU: AdamW then gives the CPU's bits
// from the same inputs, and the cross-entropy differs only by the order of its sums.

#define BLOCK 512
#define WARPS (BLOCK / 32)

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ double warp_sum(double x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Every thread gets the block's maximum.
__device__ float block_max(float x, float* shared) {
    x = warp_max(x);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    x = lane < WARPS ? shared[lane] : -INFINITY;
    x = warp_max(x);
    __syncthreads();
    return x;
}

// Every thread gets the block's sum; the order of the additions is fixed by the launch shape,
// so a run repeats its own bits.
__device__ double block_sum(double x, double* shared) {
    x = warp_sum(x);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    x = lane < WARPS ? shared[lane] : 0.0;
    x = warp_sum(x);
    __syncthreads();
    return x;
}

// One block per row u of the logits z (rows x vocab), whose (target, count) pairs are
// targets/counts[row_start[u] .. row_start[u+1]]:
//   row_loss[u] = c_u * logsumexp(z_u) - sum_y C[u,y] * z_u[y]
// and, when grad is set, z_u is overwritten with d(mean loss)/dz_u = (c_u softmax(z_u) - C[u,.]) / n.
extern "C" __global__ void cross_entropy_rows(
    float* z, unsigned long long vocab, const unsigned* row_start, const unsigned* targets,
    const unsigned* counts, float n, int grad, double* row_loss) {
    __shared__ float fshared[WARPS];
    __shared__ double dshared[WARPS];
    float* row = z + (unsigned long long)blockIdx.x * vocab;
    unsigned lo = row_start[blockIdx.x], hi = row_start[blockIdx.x + 1];

    float m = -INFINITY;
    for (unsigned long long j = threadIdx.x; j < vocab; j += BLOCK) m = fmaxf(m, row[j]);
    m = block_max(m, fshared);

    // The targets' logits are read before the row is overwritten.
    double picked = 0.0, c_u = 0.0;
    for (unsigned k = lo + threadIdx.x; k < hi; k += BLOCK) {
        picked += (double)counts[k] * (double)row[targets[k]];
        c_u += (double)counts[k];
    }
    picked = block_sum(picked, dshared);
    c_u = block_sum(c_u, dshared);

    double sum = 0.0;
    for (unsigned long long j = threadIdx.x; j < vocab; j += BLOCK) {
        float e = expf(row[j] - m);
        row[j] = e;
        sum += (double)e;
    }
    sum = block_sum(sum, dshared);
    if (threadIdx.x == 0) row_loss[blockIdx.x] = c_u * ((double)m + log(sum)) - picked;
    if (!grad) return;

    float scale = (float)(c_u / (sum * (double)n));
    for (unsigned long long j = threadIdx.x; j < vocab; j += BLOCK) row[j] *= scale;
    __syncthreads();
    // A row's targets are distinct: no two threads write the same element.
    for (unsigned k = lo + threadIdx.x; k < hi; k += BLOCK) row[targets[k]] -= (float)counts[k] / n;
}

// AdamW over a whole parameter (n elements, rows of `cols`), torch's formulation (src/ops/adamw.rs):
//   m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g g
//   theta <- theta * decay - step_size * m / (sqrt(v) / bc2_sqrt + eps)
// Dense gradient: g has n elements. Row-sparse (row_of not null): parameter row r takes gradient
// row row_of[r] of g, or zero where row_of[r] is 0xffffffff (decay and moments still apply).
extern "C" __global__ void adamw(
    unsigned long long n, unsigned long long cols, float* theta, float* m, float* v, const float* g,
    const unsigned* row_of, float decay, float one_minus_beta1, float beta2, float one_minus_beta2,
    float step_size, float bc2_sqrt, float eps) {
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float gi;
        if (row_of) {
            unsigned r = row_of[i / cols];
            gi = r == 0xffffffffu ? 0.0f : g[(unsigned long long)r * cols + i % cols];
        } else {
            gi = g[i];
        }
        float mi = m[i] + one_minus_beta1 * (gi - m[i]);
        float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        theta[i] = theta[i] * decay - step_size * (mi / denom);
    }
}

// The engine's time loops in C++ (gated.cpp: LSTM, GRU; simple.cpp: Elman; jordan.cpp): the same equations as
// the cells' `step` and `step_backward` (cells/*.py, where they are derived and read best), run T times
// without returning to Python, with each step's pointwise work fused into one pass over memory. Built and
// loaded by native.py; tested equal to the Python steps. This header: the pointwise maths, the matrix
// products, and the checks every op makes of what it is given.
//
// Layout: time-major and contiguous. XP (T, B, G) holds the input projections (with the biases the cell
// folds there) and, after the forward, what the cell saves in it (its gates); Y (T, B, H) the outputs. A
// step's matrix product goes through oneDNN's micro-kernel or its linear, with the weight prepared once for it
// (the `packed` argument, made by linear.PackedLinear), or through at::mm.

#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/CPUBlas.h>
#include <torch/library.h>

#include <cmath>

#if defined(__x86_64__) && defined(__GLIBC__)
// glibc's vector exp (libmvec): lets the compiler vectorise the loops below (without -ffast-math, which
// would also let it assume that no NaN ever occurs).
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
double exp(double) noexcept;
}
#endif

// oneDNN's matmul as ATen calls it (aten/src/ATen/native/mkldnn/Matmul.cpp): exported by libtorch, declared in no
// header it ships. Weak, so that a build of torch without it still loads these ops (linear.py then never calls
// mm: it checks the op once before using it).
namespace at::native {
TORCH_API void mkldnn_matmul(const at::Tensor& mat1, const at::Tensor& mat2, const at::Tensor& result, float beta,
                             float alpha) __attribute__((weak));
}

namespace {

inline float sigm(float a) { return 1.0f / (1.0f + expf(-a)); }
inline double sigm(double a) { return 1.0 / (1.0 + exp(-a)); }
template <typename T>
inline T tanh2(T a) {  // tanh a = 2σ(2a) − 1, as cells/base.py's tanh_via_sigmoid
  return T(2) * sigm(T(2) * a) - T(1);
}

// The activations a cell may use, by the codes native.py gives them; A is a template argument so that
// each loop is compiled (and vectorised) for one.
enum Act : int64_t { IDENTITY = 0, TANH = 1, RELU = 2, SIGMOID = 3 };

template <int A, typename T>
inline T act(T a) {
  if constexpr (A == TANH) return tanh2(a);
  if constexpr (A == RELU) return a < T(0) ? T(0) : a;  // NaN passes, as torch.relu's
  if constexpr (A == SIGMOID) return sigm(a);
  return a;
}

// d ⊙ σ'(a), from the output y = σ(a)
template <int A, typename T>
inline T act_grad(T d, T y) {
  if constexpr (A == TANH) return d * (T(1) - y * y);
  if constexpr (A == RELU) return y > T(0) ? d : T(0);
  if constexpr (A == SIGMOID) return d * y * (T(1) - y);
  return d;
}

template <typename F>
void with_act(int64_t code, const F& f) {
  switch (code) {
    case IDENTITY: return f(std::integral_constant<int, IDENTITY>{});
    case TANH: return f(std::integral_constant<int, TANH>{});
    case RELU: return f(std::integral_constant<int, RELU>{});
    case SIGMOID: return f(std::integral_constant<int, SIGMOID>{});
  }
  TORCH_CHECK(false, "unrolled native engine: unknown activation code ", code);
}

// A step's product x Wᵀ, x (M, K), W (N, K), by the form in which the caller (linear.PackedLinear) prepared W:
// - "blocks" (N / nb, K, nb), float32: Wᵀ cut into column blocks of nb, each contiguous, for oneDNN's
//   batch-reduce GEMM micro-kernel (at::native::cpublas::brgemm, which libtorch exports). Each call computes a
//   tile of at most 64 rows × nb columns; the tiles are split between threads. No dispatcher, no primitive
//   behind the call: measured here, 32 × 512 × 512 in 34 µs against 47 for oneDNN's linear with the weight
//   packed, 64 × 128 × 128 in 5 against 14–16 (benchmarks/gemm.py).
// - an MkldnnCPU tensor: oneDNN's linear with the weight packed once;
// - none: at::mm.
constexpr int64_t TILE_ROWS = 64;
#ifdef CPUBLAS_BRGEMM_F32F32F32  // libtorch's headers say whether it has the float32 micro-kernel (2.6 on)
constexpr bool HAS_MICRO_KERNEL = true;
#else
constexpr bool HAS_MICRO_KERNEL = false;  // linear.py then never makes blocks
#endif

bool is_blocks(const std::optional<at::Tensor>& packed) { return packed && packed->dim() == 3 && !packed->is_mkldnn(); }

// out[t] = x[t] Wᵀ (+ out[t] with add) (+ bias) for T steps of M rows each, W as blocks (N / nb, K, nb): step t's
// row r of x at x + t xt + r ldx, of out at out + t ot + r ldo. Tiles of at most TILE_ROWS rows of one step × a
// block, split between threads; the bias is added to each tile as it is made.
void tiled_product(const float* x, int64_t T, int64_t M, int64_t xt, int64_t ldx, const at::Tensor& blocks,
                   float* out, int64_t ot, int64_t ldo, bool add, const float* bias) {
  const int64_t K = blocks.size(1), nblocks = blocks.size(0), nb = blocks.size(2);
  const float* w = blocks.data_ptr<float>();
  const int64_t row_tiles = (M + TILE_ROWS - 1) / TILE_ROWS, tiles = T * row_tiles * nblocks;
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(TILE_ROWS * nb * K, 1));
  at::parallel_for(0, tiles, grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t j = i % nblocks, tile = i / nblocks, t = tile / row_tiles, r = tile % row_tiles * TILE_ROWS;
      const int64_t m = std::min(TILE_ROWS, M - r);
      float* c = out + t * ot + r * ldo + j * nb;
#ifdef CPUBLAS_BRGEMM_F32F32F32
      at::native::cpublas::brgemm(m, nb, K, ldx, nb, ldo, add, x + t * xt + r * ldx, w + j * K * nb, c, false);
#else
      TORCH_CHECK(false, "unrolled native engine: this build of torch has no float32 micro-kernel");
#endif
      if (!bias) continue;
      for (int64_t q = 0; q < m; ++q) {
        float* row = c + q * ldo;
#pragma omp simd
        for (int64_t p = 0; p < nb; ++p) row[p] += bias[j * nb + p];
      }
    }
  });
}

// Wᵀ cut into column blocks of nb for the micro-kernel, (N / nb, K, nb) with [j, k, i] = W[j nb + i, k], from W (N, K)
// of any strides (a parameter, or the transposed view of one): linear.blocks. A block's nb rows of W are read 16
// columns at a time, each tile's columns written as rows of the block; a transposed view's rows of Wᵀ are copied as
// they lie. One call, one pass over W: 2.5–6 µs for 128 × 128 here, against 5–8 for torch's strided copies.
at::Tensor blocks(const at::Tensor& w, int64_t nb) {
  TORCH_CHECK(w.dim() == 2 && w.device().is_cpu() && nb > 0 && w.size(0) % nb == 0,
              "blocks: a CPU matrix W (N, K) whose N is a multiple of nb");
  const int64_t N = w.size(0), K = w.size(1), s0 = w.stride(0), s1 = w.stride(1), tile = 16;
  at::Tensor out = at::empty({N / nb, K, nb}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "blocks", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, N / nb, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(nb * K, 1)), [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        scalar_t* block = dst + j * K * nb;
        const scalar_t* rows = src + j * nb * s0;
        if (s0 == 1) {  // W's columns contiguous (a transposed view): [k, ·] is a run of nb
          for (int64_t k = 0; k < K; ++k) std::copy(rows + k * s1, rows + k * s1 + nb, block + k * nb);
          continue;
        }
        for (int64_t k0 = 0; k0 < K; k0 += tile) {
          const int64_t k1 = std::min(K, k0 + tile);
          for (int64_t i = 0; i < nb; ++i)
            for (int64_t k = k0; k < k1; ++k) block[k * nb + i] = rows[i * s0 + k * s1];
        }
      }
    });
  });
  return out;
}

// out = a b, or out += a b, through oneDNN's matmul (float32, operands contiguous or transposed: read where they lie)
// or torch's
void product(const at::Tensor& a, const at::Tensor& b, at::Tensor& out, bool accumulate, bool onednn) {
  if (onednn && a.scalar_type() == at::kFloat && at::native::mkldnn_matmul != nullptr) {
    at::native::mkldnn_matmul(a, b, out, accumulate ? 1.0f : 0.0f, 1.0f);
  } else if (accumulate) {
    out.addmm_(a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

// out = x Wᵀ, or out += x Wᵀ (add), out (M, N) with rows of stride ldo; x rows contiguous.
void blocked_product(const at::Tensor& x, const at::Tensor& blocks, float* out, int64_t ldo, bool add) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && blocks.scalar_type() == at::kFloat && x.stride(1) == 1 &&
                  blocks.is_contiguous() && blocks.size(1) == x.size(1),
              "unrolled native engine: a blocked product needs float32 rows x (M, K) and blocks (N / nb, K, nb)");
  tiled_product(x.data_ptr<float>(), 1, x.size(0), 0, x.stride(0), blocks, out, 0, ldo, add, nullptr);
}

// A step's product on its rows, in place: out = x Wᵀ, or out += x Wᵀ (add), x M rows of K (stride ldx), out M rows
// of N (stride ldo), W (N, K) as the caller prepared it (linear.PackedLinear). On the micro-kernel straight from
// the pointers, no tensor made per step; otherwise oneDNN's linear with W packed, or at::mm, on views of the same
// rows, the product computed aside then copied or added.
template <typename T>
void step_product(const T* x, int64_t M, int64_t ldx, const at::Tensor& w, const std::optional<at::Tensor>& packed,
                  T* out, int64_t ldo, bool add) {
  if constexpr (std::is_same_v<T, float>) {
    if (is_blocks(packed)) return tiled_product(x, 1, M, 0, ldx, *packed, out, 0, ldo, add, nullptr);
  }
  const at::Tensor xs = at::from_blob(const_cast<T*>(x), {M, w.size(1)}, {ldx, 1}, w.options());
  at::Tensor os = at::from_blob(out, {M, w.size(0)}, {ldo, 1}, w.options());
  at::Tensor m;
  if (packed.has_value()) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                           c10::string_view, c10::List<std::optional<at::Scalar>>,
                                           std::optional<c10::string_view>)>();
    m = op.call(xs, *packed, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
  } else {
    m = at::mm(xs, w.t());
  }
  add ? os.add_(m) : os.copy_(m);
}

// A step back's x Wᵀ, the gradient of the previous state, which the next step back reads: into next[t % 2], the
// two (M, N) buffers taking turns (the step reads one while it writes the other).
template <typename T>
const at::Tensor& product_next(at::Tensor (&next)[2], int64_t t, const T* x, int64_t M, int64_t ldx, const at::Tensor& w,
                               const std::optional<at::Tensor>& packed) {
  at::Tensor& out = next[t % 2];
  if (!out.defined()) out = at::empty({M, w.size(0)}, w.options());
  step_product(x, M, ldx, w, packed, out.data_ptr<T>(), w.size(0), false);
  return out;
}

// ∂L/∂Y, (T, B, N) with contiguous rows: time-major, or a batch-first tensor seen time-major, read in place.
template <typename T>
struct Rows {
  const T* p;
  int64_t st, sb;
  explicit Rows(const at::Tensor& x) : p(x.data_ptr<T>()), st(x.stride(0)), sb(x.stride(1)) {}
  const T* operator()(int64_t t, int64_t b) const { return p + t * st + b * sb; }
};

void check_rows(const at::Tensor& t, at::IntArrayRef sizes, at::ScalarType dtype) {
  TORCH_CHECK(t.sizes() == sizes && t.stride(2) == 1 && t.device().is_cpu() && t.scalar_type() == dtype,
              "unrolled native engine: the outputs and their gradient must be CPU tensors (steps, B, ·) with contiguous rows");
}
void check_rows(const at::Tensor& t, const at::Tensor& Y) { check_rows(t, Y.sizes(), Y.scalar_type()); }

// Padded batches: row b takes part in step t iff t < len[b] (after reversal within lengths, for the backward
// direction). A row past its end outputs zeros and keeps its state (the engine reads the final state at each
// row's last step), and its backward passes nothing: ∂L/∂ of the final state enters at the row's last step.
struct Lengths {
  const int64_t* p;
  explicit Lengths(const std::optional<at::Tensor>& lengths, int64_t b0 = 0)  // rows from b0 on
      : p(lengths ? lengths->data_ptr<int64_t>() + b0 : nullptr) {}
  bool past(int64_t t, int64_t b) const { return p && t >= p[b]; }
  bool last(int64_t t, int64_t b) const { return p && t == p[b] - 1; }
};

void check_lengths(const std::optional<at::Tensor>& lengths, int64_t B, int64_t S) {
  if (!lengths) return;
  const at::Tensor& l = *lengths;
  TORCH_CHECK(l.scalar_type() == at::kLong && l.is_contiguous() && l.device().is_cpu() && l.numel() == B &&
                  (B == 0 || (l.min().item<int64_t>() >= 1 && l.max().item<int64_t>() <= S)),
              "unrolled native engine: lengths must be B int64 values in [1, steps]");
}

// The batch's rows are independent through time. Where a loop's weights are blocks for the micro-kernel, each
// thread runs every step for its own rows: one parallel region for the whole loop instead of two to four a step,
// and no row written by one core and read by another. f(b0, b1) runs the loop over rows b0..b1-1 (the products
// and passes inside it then run on the calling thread); elsewhere f(0, B), whose steps split their products and
// passes between threads. A/B of the training step, split against not, alternated in one process: Jordan 0.96×
// the time at the small size, Elman 0.97–0.98×, LSTM and GRU the same; 0.98–0.99× for each at the charlm size.
constexpr int64_t SPLIT_MIN_ROWS = 8;

// Which row of a per-thread accumulator (BiasSums, StepNorms) the calling thread adds into. Inside over_rows'
// split, the passes of a loop run on the calling thread under ATen's guard, which reports thread 0 there: the
// split's own thread number is kept here for them.
thread_local int64_t split_thread = -1;

int64_t my_slot() { return split_thread >= 0 ? split_thread : at::get_thread_num(); }

template <typename F>
void over_rows(int64_t B, bool split, const F& f) {
  if (!split || at::get_num_threads() < 2 || B < 2 * SPLIT_MIN_ROWS || at::in_parallel_region()) return f(0, B);
  at::parallel_for(0, B, SPLIT_MIN_ROWS, [&](int64_t b0, int64_t b1) {
    struct Slot {
      Slot() { split_thread = at::get_thread_num(); }
      ~Slot() { split_thread = -1; }
    } slot;
    f(b0, b1);
  });
}

// Rows b0..b1-1 of a batch: dimension 1 of a (steps, B, ·) buffer, dimension 0 of a (B, ·) state.
at::Tensor rows(const at::Tensor& t, int64_t b0, int64_t b1) { return t.narrow(t.dim() == 3 ? 1 : 0, b0, b1 - b0); }

// Step t of a (steps, B, ·) buffer, or of rows of one: its first element.
template <typename T>
T* step_ptr(const at::Tensor& X, int64_t t) {
  return X.data_ptr<T>() + t * X.stride(0);
}

// f(b) for every batch row b; the rows are split between threads from 4096 values a step up (same-process A/B of
// the training step against 16384: Elman 4–7% faster, Jordan 1–4%, LSTM and GRU the same, whose rows are wider).
template <typename F>
void each_row(int64_t B, int64_t row_len, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(row_len, 1));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// Σ over the rows of ∂L/∂xp (and ∂L/∂rp): the biases' gradients, added up as the backward writes the rows, not
// in a second pass over memory. Each thread adds into its own row of `acc`, in double: one running sum over
// thousands of float32 rows (a whole pass, or a chunk of the engine's) would otherwise lose ~1e-4 of the sum
// (measured: Jordan's bias over 900 rows, 1.6e-4 apart between one thread and two). `total` is (n, G), in
// the buffers' dtype.
struct BiasSums {
  at::Tensor acc;
  at::ScalarType dtype;
  BiasSums(const at::Tensor& like, int64_t n, int64_t G)
      : acc(at::zeros({at::get_num_threads(), n * G}, like.options().dtype(at::kDouble))), dtype(like.scalar_type()) {}
  double* mine() const { return acc.data_ptr<double>() + my_slot() * acc.size(1); }
  at::Tensor total(int64_t n) const { return acc.sum(0).view({n, -1}).to(dtype); }
};

// The engine (bptt.py) calls these ops with buffers it made; a mismatch would read memory as the wrong thing,
// so each op checks what it is given: (steps, B, ·) buffers of one dtype, contiguous, on the CPU, and states
// of B rows of the right width.
// ‖∂L/∂h_t‖ over the batch for each step, on request (the engine's `record`), from the ∂L/∂h_t each step
// computes anyway: each thread adds the squares of its rows into its own row of `acc`; `write` puts the
// square roots for steps t0..t1-1 into `out`, a (T,) tensor.
struct StepNorms {
  at::Tensor out, acc;
  StepNorms(const std::optional<at::Tensor>& norms, const at::Tensor& like, int64_t steps)
      : out(norms ? *norms : at::Tensor()),
        acc(norms ? at::zeros({at::get_num_threads(), steps}, like.options()) : at::Tensor()) {
    TORCH_CHECK(!norms || (norms->numel() == steps && norms->scalar_type() == like.scalar_type()),
                "unrolled native engine: norms must be (steps,) of the buffers' dtype");
  }
  template <typename T>
  void add(int64_t t, T squares) const {
    if (acc.defined()) acc.data_ptr<T>()[my_slot() * acc.size(1) + t] += squares;
  }
  void write(int64_t t0, int64_t t1) const {
    if (out.defined()) out.slice(0, t0, t1).copy_(acc.sum(0).slice(0, t0, t1).sqrt());
  }
};

void check_state(const at::Tensor& t, const at::Tensor& like, int64_t B, int64_t width) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == like.scalar_type() && t.numel() == B * width,
              "unrolled native engine: a state must be (B, ", width, ") of the buffers' dtype");
}

void check(std::initializer_list<at::Tensor> buffers, std::initializer_list<std::pair<at::Tensor, int64_t>> states = {}) {
  const at::Tensor& first = *buffers.begin();
  for (const auto& t : buffers)
    TORCH_CHECK(t.dim() == 3 && t.is_contiguous() && t.device().is_cpu() && t.scalar_type() == first.scalar_type() &&
                    t.size(1) == first.size(1),
                "unrolled native engine: time-major buffers must be contiguous CPU tensors (steps, B, ·) of one dtype");
  for (const auto& [t, width] : states) check_state(t, first, first.size(1), width);
}

// W (out, in) and its packed copy (oneDNN's, the same shape, or blocks (out / nb, in, nb) of the buffers' dtype);
// sizes in the buffers' last dimension
void check_weight(const at::Tensor& w, const std::optional<at::Tensor>& packed, int64_t out, int64_t in) {
  TORCH_CHECK(w.dim() == 2 && w.size(0) == out && w.size(1) == in,
              "unrolled native engine: a weight of shape (", out, ", ", in, ") expected, got ", w.sizes());
  if (is_blocks(packed)) {
    TORCH_CHECK(packed->size(0) * packed->size(2) == out && packed->size(1) == in && packed->is_contiguous() &&
                    packed->scalar_type() == w.scalar_type() && w.scalar_type() == at::kFloat,
                "unrolled native engine: float32 blocks (", out, " / nb, ", in, ", nb) expected, got ", packed->sizes());
  } else {
    TORCH_CHECK(!packed || packed->sizes() == w.sizes(), "unrolled native engine: a packed weight of shape ", w.sizes(),
                " expected, got ", packed->sizes());
  }
}

void check_width(const at::Tensor& t, int64_t width) {
  TORCH_CHECK(t.size(2) == width, "unrolled native engine: a buffer of width ", width, " expected, got ", t.sizes());
}

void check_range(const at::Tensor& Y, const at::Tensor& chunk, int64_t t0, int64_t t1) {
  TORCH_CHECK(0 <= t0 && t0 < t1 && t1 <= Y.size(0) && t1 - t0 <= chunk.size(0),
              "unrolled native engine: steps ", t0, "..", t1, " out of range");
}

// One step back through the activation that made the output y_t (Elman's h_t, Jordan's y_t): g = ∂L/∂y_t,
// from the state (∂L/∂ the final state at a padded row's last step) and from the loss; out = g σ'(·), from y
// (never read for the identity: may be null then; rows ly apart), into out (rows lo apart); ‖g‖² into `norms`, Σ out
// into `sums` when given. Rows past their end get 0.
template <int A, typename T>
void back_through_output(int64_t t, int64_t B, int64_t W, const T* y, int64_t ly, const Rows<T>& dy,
                         const at::Tensor& running, const at::Tensor& d_final, T* out, int64_t lo, const Lengths& len,
                         const StepNorms& norms, const BiasSums* sums) {
  each_row(B, W, [&](int64_t b) {
    // the row's own pointers, in locals: through the captured ones, GCC vectorised the loop with a gather and
    // scatters (it reloads a pointer captured by reference after every store)
    T* o = out + b * lo;
    if (len.past(t, b)) {  // nothing flows through a step past the row's end
      std::fill(o, o + W, T(0));
      return;
    }
    const T *dyb = dy(t, b), *d = (len.last(t, b) ? d_final : running).data_ptr<T>() + b * W;
    const T* yb = A == IDENTITY ? nullptr : y + b * ly;
    T squares = 0;
#pragma omp simd reduction(+ : squares)
    for (int64_t j = 0; j < W; ++j) {
      const T g = d[j] + dyb[j];
      squares += g * g;
      o[j] = A == IDENTITY ? g : act_grad<A>(g, yb[j]);
    }
    norms.add(t, squares);
    if (sums) {
      double* sb = sums->mine();
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) sb[j] += o[j];
    }
  });
}

}  // namespace

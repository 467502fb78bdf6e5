// The engine's time loops in C++: the same equations as the cells' `step` and `step_backward` (cells/*.py,
// where they are derived and read best), run T times without returning to Python, with each step's
// pointwise work fused into one pass over memory. Loaded by native.py; tested equal to the Python steps.
//
// Layout: time-major and contiguous. XP (T, B, G) holds the input projections (with the biases the cell
// folds there) and, after the forward, what the cell saves in it (its gates); Y (T, B, H) the outputs. A
// step's matrix product goes through oneDNN with the weight packed once (the `packed` argument, made by
// linear.PackedLinear) when that pays, else through at::mm.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
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

// x Wᵀ (+ b) for x (B, K), W (N, K): through oneDNN when the caller packed W for it.
at::Tensor matmul(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& packed,
                  const std::optional<at::Tensor>& bias = std::nullopt) {
  if (packed.has_value()) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                           c10::string_view, c10::List<std::optional<at::Scalar>>,
                                           std::optional<c10::string_view>)>();
    return op.call(x, *packed, bias, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt).contiguous();
  }
  return bias.has_value() ? at::addmm(*bias, x, w.t()) : at::mm(x, w.t());
}

// x Wᵀ + acc
at::Tensor matmul_add(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& packed,
                      const at::Tensor& acc) {
  if (packed.has_value()) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mkldnn::_linear_pointwise", "binary")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const std::optional<at::Tensor>&, c10::string_view)>();
    return op.call(x, acc, *packed, std::nullopt, "add").contiguous();
  }
  return at::addmm(acc, x, w.t());
}

// ∂L/∂Y, (T, B, N) with contiguous rows: time-major, or a batch-first tensor seen time-major, read in place.
template <typename T>
struct Rows {
  const T* p;
  int64_t st, sb;
  explicit Rows(const at::Tensor& x) : p(x.data_ptr<T>()), st(x.stride(0)), sb(x.stride(1)) {}
  const T* operator()(int64_t t, int64_t b) const { return p + t * st + b * sb; }
};

void check_rows(const at::Tensor& t, const at::Tensor& Y) {
  TORCH_CHECK(t.sizes() == Y.sizes() && t.stride(2) == 1 && t.device().is_cpu() && t.scalar_type() == Y.scalar_type(),
              "unrolled native engine: the output gradient must be a CPU tensor shaped as the output, rows contiguous");
}

// f(b) for every batch row b; the rows are split between threads when the step is large enough.
template <typename F>
void each_row(int64_t B, int64_t row_len, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(row_len, 1));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// Σ over the rows of ∂L/∂xp (and ∂L/∂rp): the biases' gradients, added up as the backward writes the rows, not
// in a second pass over memory. Each thread adds into its own row of `acc`; `total` is (n, G).
struct BiasSums {
  at::Tensor acc;
  BiasSums(const at::Tensor& like, int64_t n, int64_t G) : acc(at::zeros({at::get_num_threads(), n * G}, like.options())) {}
  template <typename T>
  T* mine() const {
    return acc.data_ptr<T>() + at::get_thread_num() * acc.size(1);
  }
  at::Tensor total(int64_t n) const { return acc.sum(0).view({n, -1}); }
};

// The engine (bptt.py) calls these ops with buffers it made; a mismatch would read memory as the wrong thing,
// so each op checks what it is given: (steps, B, ·) buffers of one dtype, contiguous, on the CPU, and states
// of B rows of the right width.
void check(std::initializer_list<at::Tensor> buffers, std::initializer_list<std::pair<at::Tensor, int64_t>> states = {}) {
  const at::Tensor& first = *buffers.begin();
  for (const auto& t : buffers)
    TORCH_CHECK(t.dim() == 3 && t.is_contiguous() && t.device().is_cpu() && t.scalar_type() == first.scalar_type() &&
                    t.size(1) == first.size(1),
                "unrolled native engine: time-major buffers must be contiguous CPU tensors (steps, B, ·) of one dtype");
  for (const auto& [t, width] : states)
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == first.scalar_type() && t.numel() == first.size(1) * width,
                "unrolled native engine: a state must be (B, ", width, ") of the buffers' dtype");
}

// W (out, in) and its packed copy; sizes in the buffers' last dimension
void check_weight(const at::Tensor& w, const std::optional<at::Tensor>& packed, int64_t out, int64_t in) {
  TORCH_CHECK(w.dim() == 2 && w.size(0) == out && w.size(1) == in && (!packed || packed->sizes() == w.sizes()),
              "unrolled native engine: a weight of shape (", out, ", ", in, ") expected, got ", w.sizes());
}

void check_width(const at::Tensor& t, int64_t width) {
  TORCH_CHECK(t.size(2) == width, "unrolled native engine: a buffer of width ", width, " expected, got ", t.sizes());
}

void check_range(const at::Tensor& Y, const at::Tensor& chunk, int64_t t0, int64_t t1) {
  TORCH_CHECK(0 <= t0 && t0 < t1 && t1 <= Y.size(0) && t1 - t0 <= chunk.size(0),
              "unrolled native engine: steps ", t0, "..", t1, " out of range");
}

// ------------------------------------------------------------------------------------------- weights
// Wᵀ, contiguous: a tiled transpose (torch's strided copy took about 4× as long for a (2048, 512) weight
// here); what linear.PackedLinear packs for the backward's products ∂z W.

at::Tensor transposed(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.is_contiguous() && w.device().is_cpu(), "transposed: a contiguous CPU matrix");
  const int64_t R = w.size(0), C = w.size(1), tile = 16;
  at::Tensor out = at::empty({C, R}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "transposed", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, C, tile, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t c0 = c_begin; c0 < c_end; c0 += tile) {
        const int64_t c1 = std::min(c_end, c0 + tile);
        for (int64_t r0 = 0; r0 < R; r0 += tile) {
          const int64_t r1 = std::min(R, r0 + tile);
          for (int64_t c = c0; c < c1; ++c)
            for (int64_t r = r0; r < r1; ++r) dst[c * R + r] = src[r * C + c];
        }
      }
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------- LSTM
// z = xp + h W_hhᵀ; i, f, o = σ(z_i, z_f, z_o), g = tanh z_g; c = f c_prev + i g; h = o tanh c.
// Saves the gates over XP[t] and c_t into C[t].

template <typename T>
void lstm_forward_t(at::Tensor& XP, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& W,
                    const std::optional<at::Tensor>& packed, at::Tensor& Y, at::Tensor& C) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2), n = B * H;
  at::Tensor h = h0;
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor m = matmul(h, W, packed);
    T* z = XP.data_ptr<T>() + t * 4 * n;
    const T* mm = m.data_ptr<T>();
    const T* cp = t == 0 ? c0.data_ptr<T>() : C.data_ptr<T>() + (t - 1) * n;
    T* cn = C.data_ptr<T>() + t * n;
    T* y = Y.data_ptr<T>() + t * n;
    each_row(B, 4 * H, [&](int64_t b) {
      T* zb = z + b * 4 * H;
      const T* mb = mm + b * 4 * H;
      const T* cpb = cp + b * H;
      T* cb = cn + b * H;
      T* yb = y + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T i = sigm(zb[j] + mb[j]);
        T f = sigm(zb[H + j] + mb[H + j]);
        T g = tanh2(zb[2 * H + j] + mb[2 * H + j]);
        T o = sigm(zb[3 * H + j] + mb[3 * H + j]);
        T c = f * cpb[j] + i * g;
        zb[j] = i, zb[H + j] = f, zb[2 * H + j] = g, zb[3 * H + j] = o;
        cb[j] = c;
        yb[j] = o * tanh2(c);
      }
    });
    h = Y[t];
  }
}

void lstm_forward(at::Tensor XP, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& W,
                  const std::optional<at::Tensor>& packed, at::Tensor Y, at::Tensor C) {
  const int64_t H = Y.size(2);
  check({XP, Y, C}, {{h0, H}, {c0, H}});
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, 4 * H), check_width(C, H), check_weight(W, packed, 4 * H, H);
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "lstm_forward",
                             [&] { lstm_forward_t<scalar_t>(XP, h0.contiguous(), c0.contiguous(), W, packed, Y, C); });
}

// Back from ∂L/∂h_t, ∂L/∂c_t (dh, dc: the last step's on entry, ∂L/∂h_0, ∂L/∂c_0 on return):
// dh += dy; dc += dh o (1 − tanh²c); d i, d f, d g, d o through σ' and tanh', written over the gates;
// ∂c_{t-1} = dc f; ∂h_{t-1} = ∂z W_hh.
template <typename T>
void lstm_backward_t(at::Tensor& XP, const at::Tensor& C, const at::Tensor& c0, const at::Tensor& dY,
                     at::Tensor& dh, at::Tensor& dc, const at::Tensor& Wt, const std::optional<at::Tensor>& packed,
                     const BiasSums& sums) {
  const int64_t S = XP.size(0), B = XP.size(1), H = C.size(2), n = B * H;
  const Rows<T> dy(dY);
  T* dcp = dc.data_ptr<T>();
  for (int64_t t = S - 1; t >= 0; --t) {
    T* z = XP.data_ptr<T>() + t * 4 * n;
    const T* cp = t == 0 ? c0.data_ptr<T>() : C.data_ptr<T>() + (t - 1) * n;
    const T* ct = C.data_ptr<T>() + t * n;
    const T* dhp = dh.data_ptr<T>();
    each_row(B, 4 * H, [&](int64_t b) {
      T* zb = z + b * 4 * H;
      const T *cpb = cp + b * H, *cb = ct + b * H, *dyb = dy(t, b), *dhb = dhp + b * H;
      T* dcb = dcp + b * H;
      T* sb = sums.mine<T>();
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T i = zb[j], f = zb[H + j], g = zb[2 * H + j], o = zb[3 * H + j];
        T tc = tanh2(cb[j]);
        T d = dhb[j] + dyb[j];
        T dct = dcb[j] + d * o * (T(1) - tc * tc);
        zb[j] = dct * g * i * (T(1) - i);
        zb[H + j] = dct * cpb[j] * f * (T(1) - f);
        zb[2 * H + j] = dct * i * (T(1) - g * g);
        zb[3 * H + j] = d * tc * o * (T(1) - o);
        dcb[j] = dct * f;
        sb[j] += zb[j], sb[H + j] += zb[H + j], sb[2 * H + j] += zb[2 * H + j], sb[3 * H + j] += zb[3 * H + j];
      }
    });
    dh = matmul(XP.select(0, t), Wt, packed);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_backward(at::Tensor XP, const at::Tensor& C, const at::Tensor& c0,
                                                 const at::Tensor& dY, const at::Tensor& dhT, const at::Tensor& dcT,
                                                 const at::Tensor& Wt, const std::optional<at::Tensor>& packed) {
  const int64_t H = C.size(2);
  check({XP, C}, {{c0, H}, {dhT, H}, {dcT, H}});
  check_rows(dY, C);
  check_width(XP, 4 * H), check_weight(Wt, packed, H, 4 * H);
  at::Tensor dh = dhT.contiguous(), dc = dcT.clone(at::MemoryFormat::Contiguous);
  const BiasSums sums(XP, 1, XP.size(2));
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "lstm_backward",
                             [&] { lstm_backward_t<scalar_t>(XP, C, c0.contiguous(), dY, dh, dc, Wt, packed, sums); });
  return {dh, dc, sums.total(1)};
}

// --------------------------------------------------------------------------------------------- Elman
// h = σ(xp + h W_hhᵀ), into Y[t]; back: ∂z = (∂h + dy) σ'(z), from h, into dZ[t − t0]; ∂h_{t-1} = ∂z W_hh.

template <typename T, int A>
void elman_forward_t(const at::Tensor& XP, const at::Tensor& h0, const at::Tensor& W,
                     const std::optional<at::Tensor>& packed, at::Tensor& Y) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2), n = B * H;
  at::Tensor h = h0;
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor m = matmul(h, W, packed);
    const T *z = XP.data_ptr<T>() + t * n, *mm = m.data_ptr<T>();
    T* y = Y.data_ptr<T>() + t * n;
    each_row(B, H, [&](int64_t b) {
#pragma omp simd
      for (int64_t j = b * H; j < (b + 1) * H; ++j) y[j] = act<A>(z[j] + mm[j]);
    });
    h = Y.select(0, t);
  }
}

void elman_forward(const at::Tensor& XP, const at::Tensor& h0, const at::Tensor& W,
                   const std::optional<at::Tensor>& packed, int64_t act_code, at::Tensor Y) {
  const int64_t H = Y.size(2);
  check({XP, Y}, {{h0, H}});
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, H), check_weight(W, packed, H, H);
  with_act(act_code, [&](auto A) {
    AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "elman_forward", [&] {
      elman_forward_t<scalar_t, decltype(A)::value>(XP, h0.contiguous(), W, packed, Y);
    });
  });
}

template <typename T, int A>
at::Tensor elman_backward_t(at::Tensor& dZ, const at::Tensor& Y, const at::Tensor& dY, at::Tensor dh,
                            const at::Tensor& Wt, const std::optional<at::Tensor>& packed, int64_t t0, int64_t t1,
                            const BiasSums& sums) {
  const int64_t B = Y.size(1), H = Y.size(2), n = B * H;
  const Rows<T> dy(dY);
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const T *y = Y.data_ptr<T>() + t * n, *d = dh.data_ptr<T>();
    T* dz = dZ.data_ptr<T>() + (t - t0) * n;
    each_row(B, H, [&](int64_t b) {
      const T* dyb = dy(t, b);
      const int64_t r = b * H;
      T* sb = sums.mine<T>();
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        dz[r + j] = act_grad<A>(d[r + j] + dyb[j], y[r + j]);
        sb[j] += dz[r + j];
      }
    });
    dh = matmul(dZ.select(0, t - t0), Wt, packed);
  }
  return dh;
}

std::tuple<at::Tensor, at::Tensor> elman_backward(at::Tensor dZ, const at::Tensor& Y, const at::Tensor& dY, const at::Tensor& dh,
                          const at::Tensor& Wt, const std::optional<at::Tensor>& packed, int64_t act_code, int64_t t0,
                          int64_t t1) {
  const int64_t H = Y.size(2);
  check({dZ, Y}, {{dh, H}});
  check_rows(dY, Y);
  check_range(Y, dZ, t0, t1);
  check_width(dZ, H), check_weight(Wt, packed, H, H);
  at::Tensor out;
  const BiasSums sums(dZ, 1, dZ.size(2));
  with_act(act_code, [&](auto A) {
    AT_DISPATCH_FLOATING_TYPES(dZ.scalar_type(), "elman_backward", [&] {
      out = elman_backward_t<scalar_t, decltype(A)::value>(dZ, Y, dY, dh.contiguous(), Wt, packed, t0, t1, sums);
    });
  });
  return {out, sums.total(1)};
}

// ----------------------------------------------------------------------------------------------- GRU
// rp = h W_hhᵀ + b_hh; r, u = σ(xp_r + rp_r, xp_u + rp_u); n = tanh(xp_n + r rp_n); h = n + u (h_prev − n).
// Saves r, u, n over XP[t] and rp_n into HN[t].

template <typename T>
void gru_forward_t(at::Tensor& XP, const at::Tensor& h0, const at::Tensor& W, const std::optional<at::Tensor>& packed,
                   const std::optional<at::Tensor>& bias, at::Tensor& Y, at::Tensor& HN) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2), n = B * H;
  at::Tensor h = h0;
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor m = matmul(h, W, packed, bias);
    T* x = XP.data_ptr<T>() + t * 3 * n;
    const T *mm = m.data_ptr<T>(), *hp = h.data_ptr<T>();
    T *hn = HN.data_ptr<T>() + t * n, *y = Y.data_ptr<T>() + t * n;
    each_row(B, 3 * H, [&](int64_t b) {
      T* xb = x + b * 3 * H;
      const T* mb = mm + b * 3 * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T r = sigm(xb[j] + mb[j]);
        T u = sigm(xb[H + j] + mb[H + j]);
        T nn = tanh2(xb[2 * H + j] + r * mb[2 * H + j]);
        xb[j] = r, xb[H + j] = u, xb[2 * H + j] = nn;
        hn[b * H + j] = mb[2 * H + j];
        y[b * H + j] = nn + u * (hp[b * H + j] - nn);
      }
    });
    h = Y.select(0, t);
  }
}

void gru_forward(at::Tensor XP, const at::Tensor& h0, const at::Tensor& W, const std::optional<at::Tensor>& packed,
                 const std::optional<at::Tensor>& bias, at::Tensor Y, at::Tensor HN) {
  const int64_t H = Y.size(2);
  check({XP, Y, HN}, {{h0, H}});
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, 3 * H), check_width(HN, H), check_weight(W, packed, 3 * H, H);
  TORCH_CHECK(!bias || (bias->numel() == 3 * H && bias->scalar_type() == XP.scalar_type()), "gru_forward: bias");
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "gru_forward",
                             [&] { gru_forward_t<scalar_t>(XP, h0.contiguous(), W, packed, bias, Y, HN); });
}

// d = ∂h + dy; ∂u = d (h_prev − n) u(1 − u); ∂n = d (1 − u)(1 − n²); ∂r = ∂n rp_n r(1 − r);
// ∂xp = (∂r, ∂u, ∂n) over XP[t], ∂rp = (∂r, ∂u, ∂n r) into dRP[t]; ∂h_{t-1} = d u + ∂rp W_hh.
template <typename T>
at::Tensor gru_backward_t(at::Tensor& XP, at::Tensor& dRP, const at::Tensor& HN, const at::Tensor& Y,
                          const at::Tensor& h0, const at::Tensor& dY, at::Tensor dh, const at::Tensor& Wt,
                          const std::optional<at::Tensor>& packed, const BiasSums& sums) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2), n = B * H;
  const Rows<T> dy(dY);
  at::Tensor direct = at::empty_like(dh);
  for (int64_t t = S - 1; t >= 0; --t) {
    T *x = XP.data_ptr<T>() + t * 3 * n, *dr = dRP.data_ptr<T>() + t * 3 * n, *dd = direct.data_ptr<T>();
    const T *hn = HN.data_ptr<T>() + t * n, *d = dh.data_ptr<T>();
    const T* hp = t == 0 ? h0.data_ptr<T>() : Y.data_ptr<T>() + (t - 1) * n;
    each_row(B, 3 * H, [&](int64_t b) {
      T *xb = x + b * 3 * H, *drb = dr + b * 3 * H, *sx = sums.mine<T>(), *sr = sx + 3 * H;
      const T* dyb = dy(t, b);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const int64_t k = b * H + j;
        T r = xb[j], u = xb[H + j], nn = xb[2 * H + j];
        T g = d[k] + dyb[j];
        T dn = g * (T(1) - u) * (T(1) - nn * nn);
        T dr_ = dn * hn[k] * r * (T(1) - r);
        T du = g * (hp[k] - nn) * u * (T(1) - u);
        xb[j] = dr_, xb[H + j] = du, xb[2 * H + j] = dn;
        drb[j] = dr_, drb[H + j] = du, drb[2 * H + j] = dn * r;
        sx[j] += dr_, sx[H + j] += du, sx[2 * H + j] += dn;
        sr[j] += dr_, sr[H + j] += du, sr[2 * H + j] += dn * r;
        dd[k] = g * u;
      }
    });
    dh = matmul_add(dRP.select(0, t), Wt, packed, direct);
  }
  return dh;
}

std::tuple<at::Tensor, at::Tensor> gru_backward(at::Tensor XP, at::Tensor dRP, const at::Tensor& HN, const at::Tensor& Y, const at::Tensor& h0,
                        const at::Tensor& dY, const at::Tensor& dh, const at::Tensor& Wt,
                        const std::optional<at::Tensor>& packed) {
  const int64_t H = Y.size(2);
  check({XP, dRP, HN, Y}, {{h0, H}, {dh, H}});
  check_rows(dY, Y);
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, 3 * H), check_width(dRP, 3 * H), check_width(HN, H), check_weight(Wt, packed, H, 3 * H);
  at::Tensor out;
  const BiasSums sums(XP, 2, XP.size(2));
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "gru_backward", [&] {
    out = gru_backward_t<scalar_t>(XP, dRP, HN, Y, h0.contiguous(), dY, dh.contiguous(), Wt, packed, sums);
  });
  return {out, sums.total(2)};
}

// -------------------------------------------------------------------------------------------- Jordan
// h = σ_h(xp + y_prev W_yhᵀ), written over XP[t]; y = σ_y(h W_hyᵀ + b_y), into Y[t].

template <typename T, int AH, int AY>
void jordan_forward_t(at::Tensor& XP, const at::Tensor& y0, const at::Tensor& Wyh,
                      const std::optional<at::Tensor>& packed, const at::Tensor& Why,
                      const std::optional<at::Tensor>& packed_out, const std::optional<at::Tensor>& bias_y,
                      at::Tensor& Y) {
  const int64_t S = XP.size(0), B = XP.size(1), H = XP.size(2), O = Y.size(2);
  at::Tensor y_prev = y0;
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor m = matmul(y_prev, Wyh, packed);
    T* a = XP.data_ptr<T>() + t * B * H;
    const T* mm = m.data_ptr<T>();
    each_row(B, H, [&](int64_t b) {
#pragma omp simd
      for (int64_t j = b * H; j < (b + 1) * H; ++j) a[j] = act<AH>(a[j] + mm[j]);
    });
    at::Tensor o = matmul(XP.select(0, t), Why, packed_out, bias_y);
    const T* op = o.data_ptr<T>();
    T* y = Y.data_ptr<T>() + t * B * O;
    each_row(B, O, [&](int64_t b) {
#pragma omp simd
      for (int64_t j = b * O; j < (b + 1) * O; ++j) y[j] = act<AY>(op[j]);
    });
    y_prev = Y.select(0, t);
  }
}

void jordan_forward(at::Tensor XP, const at::Tensor& y0, const at::Tensor& Wyh, const std::optional<at::Tensor>& packed,
                    const at::Tensor& Why, const std::optional<at::Tensor>& packed_out,
                    const std::optional<at::Tensor>& bias_y, int64_t act_h, int64_t act_y, at::Tensor Y) {
  const int64_t H = XP.size(2), O = Y.size(2);
  check({XP, Y}, {{y0, O}});
  check_range(XP, Y, 0, XP.size(0));
  check_weight(Wyh, packed, H, O), check_weight(Why, packed_out, O, H);
  TORCH_CHECK(!bias_y || (bias_y->numel() == O && bias_y->scalar_type() == XP.scalar_type()), "jordan_forward: bias");
  with_act(act_h, [&](auto AH) {
    with_act(act_y, [&](auto AY) {
      AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "jordan_forward", [&] {
        jordan_forward_t<scalar_t, decltype(AH)::value, decltype(AY)::value>(XP, y0.contiguous(), Wyh, packed, Why,
                                                                             packed_out, bias_y, Y);
      });
    });
  });
}

// ∂o = σ_y'(∂y_t + dy) into dO[t − t0]; ∂a = σ_h'(∂o W_hy) into dA[t − t0]; ∂y_{t-1} = ∂a W_yh.
template <typename T, int AH, int AY>
at::Tensor jordan_backward_t(at::Tensor& dA, at::Tensor& dO, const at::Tensor& Hs, const at::Tensor& Y,
                             const at::Tensor& dY, at::Tensor dy_state, const at::Tensor& Wyh_t,
                             const std::optional<at::Tensor>& packed, const at::Tensor& Why_t,
                             const std::optional<at::Tensor>& packed_out, int64_t t0, int64_t t1,
                             const BiasSums& sums) {
  const int64_t B = Y.size(1), O = Y.size(2), H = Hs.size(2);
  const Rows<T> dy(dY);
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const T *y = Y.data_ptr<T>() + t * B * O, *ds = dy_state.data_ptr<T>();
    T* dout = dO.data_ptr<T>() + (t - t0) * B * O;
    each_row(B, O, [&](int64_t b) {
      const T* dyb = dy(t, b);
      const int64_t r = b * O;
#pragma omp simd
      for (int64_t j = 0; j < O; ++j) dout[r + j] = act_grad<AY>(ds[r + j] + dyb[j], y[r + j]);
    });
    at::Tensor dh = matmul(dO.select(0, t - t0), Why_t, packed_out);
    const T *h = Hs.data_ptr<T>() + t * B * H, *dhp = dh.data_ptr<T>();
    T* da = dA.data_ptr<T>() + (t - t0) * B * H;
    each_row(B, H, [&](int64_t b) {
      T* sb = sums.mine<T>();
      const int64_t r = b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        da[r + j] = act_grad<AH>(dhp[r + j], h[r + j]);
        sb[j] += da[r + j];
      }
    });
    dy_state = matmul(dA.select(0, t - t0), Wyh_t, packed);
  }
  return dy_state;
}

std::tuple<at::Tensor, at::Tensor> jordan_backward(at::Tensor dA, at::Tensor dO, const at::Tensor& Hs, const at::Tensor& Y,
                           const at::Tensor& dY, const at::Tensor& dy_state, const at::Tensor& Wyh_t,
                           const std::optional<at::Tensor>& packed, const at::Tensor& Why_t,
                           const std::optional<at::Tensor>& packed_out, int64_t act_h, int64_t act_y, int64_t t0,
                           int64_t t1) {
  const int64_t H = Hs.size(2), O = Y.size(2);
  check({dA, dO, Hs, Y}, {{dy_state, O}});
  check_rows(dY, Y);
  check_range(Y, dA, t0, t1), check_range(Y, dO, t0, t1), check_range(Hs, Y, 0, Hs.size(0));
  check_width(dA, H), check_width(dO, O), check_weight(Wyh_t, packed, O, H), check_weight(Why_t, packed_out, H, O);
  at::Tensor out;
  const BiasSums sums(dA, 1, dA.size(2));
  with_act(act_h, [&](auto AH) {
    with_act(act_y, [&](auto AY) {
      AT_DISPATCH_FLOATING_TYPES(dA.scalar_type(), "jordan_backward", [&] {
        out = jordan_backward_t<scalar_t, decltype(AH)::value, decltype(AY)::value>(
            dA, dO, Hs, Y, dY, dy_state.contiguous(), Wyh_t, packed, Why_t, packed_out, t0, t1, sums);
      });
    });
  });
  return {out, sums.total(1)};
}

}  // namespace

TORCH_LIBRARY(unrolled, m) {
  m.def("transposed(Tensor w) -> Tensor", &transposed);
  // Kernels for every dispatch key (a packed weight is an MkldnnCPU tensor); called only under no_grad,
  // from the engine's autograd.Function.
  m.def("lstm_forward(Tensor(a!) xp, Tensor h0, Tensor c0, Tensor w, Tensor? packed, Tensor(b!) y, Tensor(c!) c) -> ()",
        &lstm_forward);
  m.def("lstm_backward(Tensor(a!) xp, Tensor c, Tensor c0, Tensor dy, Tensor dh, Tensor dc, Tensor wt, Tensor? packed)"
        " -> (Tensor, Tensor, Tensor)",
        &lstm_backward);
  m.def("elman_forward(Tensor xp, Tensor h0, Tensor w, Tensor? packed, int act, Tensor(a!) y) -> ()", &elman_forward);
  m.def("elman_backward(Tensor(a!) dz, Tensor y, Tensor dy, Tensor dh, Tensor wt, Tensor? packed, int act, int t0, "
        "int t1) -> (Tensor, Tensor)",
        &elman_backward);
  m.def("gru_forward(Tensor(a!) xp, Tensor h0, Tensor w, Tensor? packed, Tensor? bias, Tensor(b!) y, Tensor(c!) hn) -> ()",
        &gru_forward);
  m.def("gru_backward(Tensor(a!) xp, Tensor(b!) drp, Tensor hn, Tensor y, Tensor h0, Tensor dy, Tensor dh, Tensor wt, "
        "Tensor? packed) -> (Tensor, Tensor)",
        &gru_backward);
  m.def("jordan_forward(Tensor(a!) xp, Tensor y0, Tensor w_yh, Tensor? packed, Tensor w_hy, Tensor? packed_out, "
        "Tensor? bias_y, int act_h, int act_y, Tensor(b!) y) -> ()",
        &jordan_forward);
  m.def("jordan_backward(Tensor(a!) da, Tensor(b!) dout, Tensor hs, Tensor y, Tensor dy, Tensor dstate, Tensor w_yh_t, "
        "Tensor? packed, Tensor w_hy_t, Tensor? packed_out, int act_h, int act_y, int t0, int t1) -> (Tensor, Tensor)",
        &jordan_backward);
}

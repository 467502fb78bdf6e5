// Elman's loops, the products the engine calls from Python (oneDNN's matmul, the micro-kernel's) and the tiled
// transpose that packs Wᵀ (see common.h for the layout and the helpers). The library `unrolled` is declared here;
// gated.cpp adds the LSTM's and the GRU's ops to it, jordan.cpp Jordan's.
// Kernels for every dispatch key (a packed weight is an MkldnnCPU tensor); called only under no_grad, from the
// engine's autograd.Function.

#include "common.h"

namespace {

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

// x Wᵀ (+ b) (+ acc) with W as blocks: the steps' product for callers in Python (linear.PackedLinear).
at::Tensor blocked_linear(const at::Tensor& x, const at::Tensor& blocks, const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& acc) {
  TORCH_CHECK(x.dim() == 2 && blocks.dim() == 3 && x.device().is_cpu(), "blocked_linear: x (M, K) and blocks (N / nb, K, nb)");
  const int64_t M = x.size(0), N = blocks.size(0) * blocks.size(2);
  at::Tensor out = acc ? acc->clone(at::MemoryFormat::Contiguous) : at::zeros({M, N}, x.options());
  TORCH_CHECK(out.sizes() == at::IntArrayRef({M, N}), "blocked_linear: acc must be (M, N)");
  if (bias) out.add_(*bias);
  blocked_product(x.stride(1) == 1 ? x : x.contiguous(), blocks, out.data_ptr<float>(), out.stride(0), true);
  return out;
}

// out[t] = x[t] Wᵀ (+ b) for every step t, W as blocks: x (T, B, K) and out (T, B, N) need contiguous rows only, so
// that a batch-first tensor seen time-major is read, or written, where it lies: the input projection from the
// layer's batch-first input, ∂X into a batch-first gradient, with no transposing copy (and no weight packed for
// oneDNN's linear).
void steps_linear(const at::Tensor& x, const at::Tensor& blocks, const std::optional<at::Tensor>& bias, at::Tensor out) {
  TORCH_CHECK(x.dim() == 3 && out.dim() == 3 && blocks.dim() == 3 && x.scalar_type() == at::kFloat &&
                  out.scalar_type() == at::kFloat && blocks.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  out.device().is_cpu() && x.stride(2) == 1 && out.stride(2) == 1 && blocks.is_contiguous() &&
                  x.size(0) == out.size(0) && x.size(1) == out.size(1) && blocks.size(1) == x.size(2) &&
                  blocks.size(0) * blocks.size(2) == out.size(2),
              "steps_linear: float32 CPU steps x (T, B, K), out (T, B, N) with contiguous rows, blocks (N / nb, K, nb)");
  TORCH_CHECK(!bias || (bias->numel() == out.size(2) && bias->is_contiguous() && bias->scalar_type() == at::kFloat),
              "steps_linear: a float32 bias of out's width");
  tiled_product(x.data_ptr<float>(), x.size(0), x.size(1), x.stride(0), x.stride(1), blocks, out.data_ptr<float>(),
                out.stride(0), out.stride(1), false, bias ? bias->data_ptr<float>() : nullptr);
}

// out = a b, or out += a b, through oneDNN's matmul, which reads a transposed operand where it lies and adds into
// out in the same pass (linear.matmul_into). A weight's gradient Σ_n d_nᵀ x_n is a = dᵀ, b = x: no copies of the
// operands in oneDNN's layout, no sum of partial products (the weight-gradient kernel torch exposes,
// mkldnn_linear_backward_weights, needs both copied, and ran at ~400 GFLOP/s here against this one's ~430–470);
// ∂X = ∂XP W_ih goes straight into its place in ∂X, and no weight is packed or transposed for a one-shot product.
void mm(const at::Tensor& a, const at::Tensor& b, at::Tensor out, bool accumulate) {
  TORCH_CHECK(at::native::mkldnn_matmul != nullptr, "mm: this build of torch has no oneDNN matmul");
  const auto plain = [](const at::Tensor& t) {
    return t.dim() == 2 && (t.is_contiguous() || t.t().is_contiguous()) && t.scalar_type() == at::kFloat &&
           t.device().is_cpu();
  };
  TORCH_CHECK(plain(a) && plain(b) && plain(out) && out.is_contiguous() && a.size(1) == b.size(0) &&
                  out.size(0) == a.size(0) && out.size(1) == b.size(1),
              "mm: float32 CPU matrices a (M, K), b (K, N), each contiguous or transposed, and out (M, N) contiguous");
  product(a, b, out, accumulate, true);
}

// --------------------------------------------------------------------------------------------- Elman
// h = σ(xp + h W_hhᵀ), into Y[t] (the sum goes over XP[t]); back: ∂z = (∂h + dy) σ'(z), from h, into dZ[t − t0];
// ∂h_{t-1} = ∂z W_hh.

template <typename T, int A>
void elman_forward_t(const at::Tensor& XP, const at::Tensor& h0, const at::Tensor& W,
                     const std::optional<at::Tensor>& packed, const at::Tensor& Y, const Lengths& len) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2);
  for (int64_t t = 0; t < S; ++t) {
    T *z = step_ptr<T>(XP, t), *y = step_ptr<T>(Y, t);
    const T* h = t == 0 ? h0.data_ptr<T>() : step_ptr<T>(Y, t - 1);
    step_product(h, B, H, W, packed, z, H, true);  // z_t = xp_t + h W_hhᵀ, over xp_t
    each_row(B, H, [&](int64_t b) {
      T* yb = y + b * H;
      if (len.past(t, b)) {  // the row's sequence has ended: output 0 (its state is read at its last step)
        std::fill(yb, yb + H, T(0));
        return;
      }
      const T* zb = z + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) yb[j] = act<A>(zb[j]);
    });
  }
}

void elman_forward(at::Tensor XP, const at::Tensor& h0, const at::Tensor& W,
                   const std::optional<at::Tensor>& packed, int64_t act_code, at::Tensor Y,
                   const std::optional<at::Tensor>& lengths) {
  const int64_t H = Y.size(2);
  check({XP, Y}, {{h0, H}});
  check_lengths(lengths, XP.size(1), XP.size(0));
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, H), check_weight(W, packed, H, H);
  const at::Tensor h_0 = h0.contiguous();
  with_act(act_code, [&](auto A) {
    AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "elman_forward", [&] {
      over_rows(XP.size(1), is_blocks(packed), [&](int64_t b0, int64_t b1) {
        elman_forward_t<scalar_t, decltype(A)::value>(rows(XP, b0, b1), rows(h_0, b0, b1), W, packed, rows(Y, b0, b1),
                                                      Lengths(lengths, b0));
      });
    });
  });
}

template <typename T, int A>
at::Tensor elman_backward_t(const at::Tensor& dZ, const at::Tensor& Y, const at::Tensor& dY, at::Tensor dh,
                            const at::Tensor& d_final, const at::Tensor& Wt, const std::optional<at::Tensor>& packed,
                            int64_t t0, int64_t t1, const BiasSums& sums, const Lengths& len,
                            const StepNorms& norms) {
  const int64_t B = Y.size(1), H = Y.size(2);
  const Rows<T> dy(dY);
  at::Tensor next[2];
  for (int64_t t = t1 - 1; t >= t0; --t) {
    T* dz = step_ptr<T>(dZ, t - t0);
    back_through_output<A>(t, B, H, step_ptr<T>(Y, t), H, dy, dh, d_final, dz, H, len, norms, &sums);
    dh = product_next(next, t, dz, B, H, Wt, packed);
  }
  return dh;
}

std::tuple<at::Tensor, at::Tensor> elman_backward(at::Tensor dZ, const at::Tensor& Y, const at::Tensor& dY,
                                                  const at::Tensor& dh, const at::Tensor& d_final, const at::Tensor& Wt,
                                                  const std::optional<at::Tensor>& packed, int64_t act_code, int64_t t0,
                                                  int64_t t1, const std::optional<at::Tensor>& lengths,
                                                  const std::optional<at::Tensor>& norms) {
  const int64_t H = Y.size(2);
  check({dZ, Y}, {{dh, H}, {d_final, H}});
  check_lengths(lengths, Y.size(1), Y.size(0));
  check_rows(dY, Y);
  check_range(Y, dZ, t0, t1);
  check_width(dZ, H), check_weight(Wt, packed, H, H);
  const at::Tensor out = at::empty_like(dh, at::MemoryFormat::Contiguous), d_h = dh.contiguous(),
                   d_fin = d_final.contiguous();
  const BiasSums sums(dZ, 1, dZ.size(2));
  const StepNorms step_norms(norms, Y, Y.size(0));
  with_act(act_code, [&](auto A) {
    AT_DISPATCH_FLOATING_TYPES(dZ.scalar_type(), "elman_backward", [&] {
      over_rows(Y.size(1), is_blocks(packed), [&](int64_t b0, int64_t b1) {
        rows(out, b0, b1).copy_(elman_backward_t<scalar_t, decltype(A)::value>(
            rows(dZ, b0, b1), rows(Y, b0, b1), rows(dY, b0, b1), rows(d_h, b0, b1), rows(d_fin, b0, b1), Wt, packed,
            t0, t1, sums, Lengths(lengths, b0), step_norms));
      });
    });
  });
  step_norms.write(t0, t1);
  return {out, sums.total(1)};
}

}  // namespace

TORCH_LIBRARY(unrolled, m) {
  m.def("transposed(Tensor w) -> Tensor", &transposed);
  m.def("blocks(Tensor w, int nb) -> Tensor", &blocks);
  m.def("mm(Tensor a, Tensor b, Tensor(a!) out, bool accumulate) -> ()", &mm);
  m.def("blocked_linear(Tensor x, Tensor blocks, Tensor? bias, Tensor? acc) -> Tensor", &blocked_linear);
  m.def("steps_linear(Tensor x, Tensor blocks, Tensor? bias, Tensor(a!) out) -> ()", &steps_linear);
  m.def("micro_kernel() -> bool", [] { return HAS_MICRO_KERNEL; });
  m.def("elman_forward(Tensor(a!) xp, Tensor h0, Tensor w, Tensor? packed, int act, Tensor(b!) y, Tensor? lengths) -> ()",
        &elman_forward);
  m.def("elman_backward(Tensor(a!) dz, Tensor y, Tensor dy, Tensor dh, Tensor d_final, Tensor wt, Tensor? packed, "
        "int act, int t0, int t1, Tensor? lengths, Tensor? norms) -> (Tensor, Tensor)",
        &elman_backward);
}

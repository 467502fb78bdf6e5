// Jordan's loops (see common.h for the layout and the helpers), and its products over time.

#include "common.h"

namespace {

// -------------------------------------------------------------------------------------------- Jordan
// h = σ_h(xp + y_prev W_yhᵀ), written over XP[t]; y = σ_y(h W_hyᵀ + b_y), into Y[t].

template <typename T, int AH, int AY>
void jordan_forward_t(const at::Tensor& XP, const at::Tensor& y0, const at::Tensor& Wyh,
                      const std::optional<at::Tensor>& packed, const at::Tensor& Why,
                      const std::optional<at::Tensor>& packed_out, const std::optional<at::Tensor>& bias_y,
                      const at::Tensor& Y, const Lengths& len) {
  const int64_t S = XP.size(0), B = XP.size(1), H = XP.size(2), O = Y.size(2), ys = Y.stride(1);  // Y's row stride
  const T* by = bias_y ? bias_y->data_ptr<T>() : nullptr;
  for (int64_t t = 0; t < S; ++t) {
    T *a = step_ptr<T>(XP, t), *y = step_ptr<T>(Y, t);
    const T* y_prev = t == 0 ? y0.data_ptr<T>() : step_ptr<T>(Y, t - 1);
    step_product(y_prev, B, t == 0 ? O : ys, Wyh, packed, a, H, true);  // xp_t + y_{t-1} W_yhᵀ, over xp_t
    each_row(B, H, [&](int64_t b) {
      T* ab = a + b * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ab[j] = act<AH>(ab[j]);
    });
    step_product<T>(a, B, H, Why, packed_out, y, ys, false);  // h_t W_hyᵀ, into Y[t]
    each_row(B, O, [&](int64_t b) {
      T* yb = y + b * ys;
      if (len.past(t, b)) {  // the row's sequence has ended: output 0 (its state is read at its last step)
        std::fill(yb, yb + O, T(0));
        return;
      }
#pragma omp simd
      for (int64_t j = 0; j < O; ++j) yb[j] = act<AY>(yb[j] + (by ? by[j] : T(0)));
    });
  }
}

void jordan_forward(at::Tensor XP, const at::Tensor& y0, const at::Tensor& Wyh, const std::optional<at::Tensor>& packed,
                    const at::Tensor& Why, const std::optional<at::Tensor>& packed_out,
                    const std::optional<at::Tensor>& bias_y, int64_t act_h, int64_t act_y, at::Tensor Y,
                    const std::optional<at::Tensor>& lengths) {
  const int64_t H = XP.size(2), O = Y.size(2);
  check({XP}, {{y0, O}});
  check_rows(Y, {XP.size(0), XP.size(1), O}, XP.scalar_type());  // time-major, or batch-first seen time-major
  check_lengths(lengths, XP.size(1), XP.size(0));
  check_weight(Wyh, packed, H, O), check_weight(Why, packed_out, O, H);
  TORCH_CHECK(!bias_y || (bias_y->numel() == O && bias_y->scalar_type() == XP.scalar_type()), "jordan_forward: bias");
  const at::Tensor y_0 = y0.contiguous();
  with_act(act_h, [&](auto AH) {
    with_act(act_y, [&](auto AY) {
      AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "jordan_forward", [&] {
        over_rows(XP.size(1), is_blocks(packed) && is_blocks(packed_out), [&](int64_t b0, int64_t b1) {
          jordan_forward_t<scalar_t, decltype(AH)::value, decltype(AY)::value>(
              rows(XP, b0, b1), rows(y_0, b0, b1), Wyh, packed, Why, packed_out, bias_y, rows(Y, b0, b1),
              Lengths(lengths, b0));
        });
      });
    });
  });
}

// ∂o = σ_y'(∂y_t + dy) into dO[t − t0]; ∂a = σ_h'(∂o W_hy) into dA[t − t0]; ∂y_{t-1} = ∂a W_yh. Y, the outputs, is
// undefined where σ_y is the identity (the engine keeps none then).
template <typename T, int AH, int AY>
at::Tensor jordan_backward_t(const at::Tensor& dA, const at::Tensor& dO, const at::Tensor& Hs, const at::Tensor& Y,
                             const at::Tensor& dY, at::Tensor dy_state, const at::Tensor& d_final,
                             const at::Tensor& Wyh_t, const std::optional<at::Tensor>& packed, const at::Tensor& Why_t,
                             const std::optional<at::Tensor>& packed_out, int64_t t0, int64_t t1,
                             const BiasSums& sums, const BiasSums& out_sums, const Lengths& len,
                             const StepNorms& norms) {
  const int64_t B = dO.size(1), O = dO.size(2), H = Hs.size(2);
  const Rows<T> dy(dY);
  at::Tensor next[2];
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const T* y = Y.defined() ? step_ptr<T>(Y, t) : nullptr;
    T *o = step_ptr<T>(dO, t - t0), *da = step_ptr<T>(dA, t - t0);
    back_through_output<AY>(t, B, O, y, dy, dy_state, d_final, o, len, norms, &out_sums);
    step_product(o, B, O, Why_t, packed_out, da, H, false);  // ∂h = ∂o W_hy, into dA
    const T* h = step_ptr<T>(Hs, t);
    each_row(B, H, [&](int64_t b) {
      double* sb = sums.mine();
      const int64_t r = b * H;
      if (len.past(t, b)) {
        std::fill(da + r, da + r + H, T(0));
        return;
      }
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        da[r + j] = act_grad<AH>(da[r + j], h[r + j]);
        sb[j] += da[r + j];
      }
    });
    dy_state = product_next(next, t, da, B, H, Wyh_t, packed);
  }
  return dy_state;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> jordan_backward(at::Tensor dA, at::Tensor dO, const at::Tensor& Hs,
                           const std::optional<at::Tensor>& y, const at::Tensor& dY, const at::Tensor& dy_state,
                           const at::Tensor& d_final, const at::Tensor& Wyh_t, const std::optional<at::Tensor>& packed,
                           const at::Tensor& Why_t, const std::optional<at::Tensor>& packed_out, int64_t act_h,
                           int64_t act_y, int64_t t0, int64_t t1, const std::optional<at::Tensor>& lengths,
                           const std::optional<at::Tensor>& norms) {
  const int64_t S = Hs.size(0), B = Hs.size(1), H = Hs.size(2), O = dO.size(2);
  TORCH_CHECK(y || act_y == IDENTITY, "jordan_backward: the outputs are needed for a non-identity output activation");
  const at::Tensor Y = y ? *y : at::Tensor();
  check({dA, dO, Hs}, {{dy_state, O}, {d_final, O}});
  if (y) check({Hs, Y}), check_width(Y, O), check_range(Y, Hs, 0, S), check_range(Hs, Y, 0, Y.size(0));
  check_lengths(lengths, B, S);
  check_rows(dY, {S, B, O}, Hs.scalar_type());
  check_range(Hs, dA, t0, t1), check_range(Hs, dO, t0, t1);
  check_width(dA, H), check_weight(Wyh_t, packed, O, H), check_weight(Why_t, packed_out, H, O);
  const at::Tensor out = at::empty_like(dy_state, at::MemoryFormat::Contiguous), d_y = dy_state.contiguous(),
                   d_fin = d_final.contiguous();
  const BiasSums sums(dA, 1, H), out_sums(dA, 1, O);
  const StepNorms step_norms(norms, Hs, S);
  with_act(act_h, [&](auto AH) {
    with_act(act_y, [&](auto AY) {
      AT_DISPATCH_FLOATING_TYPES(dA.scalar_type(), "jordan_backward", [&] {
        over_rows(B, is_blocks(packed) && is_blocks(packed_out), [&](int64_t b0, int64_t b1) {
          rows(out, b0, b1).copy_(jordan_backward_t<scalar_t, decltype(AH)::value, decltype(AY)::value>(
              rows(dA, b0, b1), rows(dO, b0, b1), rows(Hs, b0, b1), y ? rows(Y, b0, b1) : Y, rows(dY, b0, b1),
              rows(d_y, b0, b1), rows(d_fin, b0, b1), Wyh_t, packed, Why_t, packed_out, t0, t1, sums, out_sums,
              Lengths(lengths, b0), step_norms));
        });
      });
    });
  });
  step_norms.write(t0, t1);
  return {out, sums.total(1), out_sums.total(1)};
}

// out += a b through oneDNN's matmul (float32, operands contiguous or transposed: read where they lie) or torch's.
void add_product(const at::Tensor& a, const at::Tensor& b, at::Tensor& out, bool onednn) {
  if (onednn && a.scalar_type() == at::kFloat && at::native::mkldnn_matmul != nullptr) {
    at::native::mkldnn_matmul(a, b, out, 1.0f, 1.0f);
  } else {
    out.addmm_(a, b);
  }
}

// The products over time of the steps t0..t1-1, once jordan_backward has written their ∂L/∂a into dA and ∂L/∂o into
// dO, added into the sums that are wanted (the others are empty): g_hy += Σ ∂o_tᵀ h_t, g_ih += Σ ∂a_tᵀ x_t (X's steps
// copied time-major into dO's memory, read by then), and g_rec += Σ ∂a_tᵀ y_{t-1} from `prev` (the outputs behind y_0)
// where the engine kept the outputs, else Σ ∂a_tᵀ h_{t-1} over t ≥ max(t0, 1), from which cells/jordan.py makes W_yh's
// gradient at the end; then ∂X = ∂A W_ih into steps t0..t1-1 of dX. One call a chunk, for the two dozen small tensor
// operations Python took around the same products.
void jordan_sums(const at::Tensor& dA, const at::Tensor& dO, const at::Tensor& Hs, const std::optional<at::Tensor>& prev,
                 const at::Tensor& X, int64_t t0, int64_t t1, bool onednn, at::Tensor g_ih, at::Tensor g_rec,
                 at::Tensor g_hy, at::Tensor dX, const at::Tensor& w_ih, const std::optional<at::Tensor>& blocks) {
  const int64_t S = Hs.size(0), B = Hs.size(1), H = Hs.size(2), O = dO.size(2), F = X.size(2), n = t1 - t0;
  check({dA, dO, Hs});
  check_range(Hs, dA, t0, t1), check_range(Hs, dO, t0, t1), check_width(dA, H);
  TORCH_CHECK(X.dim() == 3 && X.size(0) == S && X.size(1) == B && X.scalar_type() == Hs.scalar_type() &&
                  (!prev || (prev->is_contiguous() && prev->sizes() == at::IntArrayRef({S + 1, B, O}))),
              "jordan_sums: X (T, B, F) and the outputs behind y_0 (T + 1, B, O) of the buffers' dtype");
  for (const at::Tensor* g : {&g_ih, &g_rec, &g_hy})
    TORCH_CHECK(g->numel() == 0 || (g->is_contiguous() && g->scalar_type() == Hs.scalar_type()),
                "jordan_sums: contiguous sums of the buffers' dtype");
  const at::Tensor da = dA.narrow(0, 0, n).view({n * B, H});
  if (g_hy.numel()) {
    add_product(dO.narrow(0, 0, n).view({n * B, O}).t(), Hs.narrow(0, t0, n).view({n * B, H}), g_hy, onednn);
  }
  if (g_ih.numel()) {
    const at::Tensor x = X.narrow(0, t0, n);
    at::Tensor rows = x;
    if (!x.is_contiguous()) {  // X batch-first: its steps copied time-major, into ∂L/∂o's buffer (read by now) where
      rows = n * B * F <= dO.numel() ? dO.view(-1).narrow(0, 0, n * B * F).view(x.sizes())  // they fit, else new memory
                                     : at::empty_like(x, at::MemoryFormat::Contiguous);
      rows.copy_(x);
    }
    add_product(da.t(), rows.view({n * B, F}), g_ih, onednn);
  }
  if (g_rec.numel() && prev) {
    add_product(da.t(), prev->narrow(0, t0, n).view({n * B, O}), g_rec, onednn);
  } else if (g_rec.numel()) {
    const int64_t f = t0 == 0 ? 1 : 0;  // step 0's r_{-1} is y_0, not W_hy h_{-1} + b_y
    if (n > f) {
      const at::Tensor h_prev = Hs.narrow(0, t0 + f - 1, n - f).view({(n - f) * B, H});
      add_product(da.narrow(0, f * B, (n - f) * B).t(), h_prev, g_rec, onednn);
    }
  }
  if (dX.numel() == 0) return;
  TORCH_CHECK(dX.dim() == 3 && dX.size(0) == S && dX.size(1) == B && dX.stride(2) == 1, "jordan_sums: dX (T, B, F)");
  if (is_blocks(blocks)) {
    TORCH_CHECK(blocks->size(1) == H && blocks->size(0) * blocks->size(2) == dX.size(2), "jordan_sums: W_ih's blocks");
    tiled_product(da.data_ptr<float>(), n, B, B * H, H, *blocks, dX.data_ptr<float>() + t0 * dX.stride(0), dX.stride(0),
                  dX.stride(1), false, nullptr);
  } else {
    dX.narrow(0, t0, n).copy_(at::matmul(dA.narrow(0, 0, n), w_ih));
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(unrolled, m) {
  m.def("jordan_forward(Tensor(a!) xp, Tensor y0, Tensor w_yh, Tensor? packed, Tensor w_hy, Tensor? packed_out, "
        "Tensor? bias_y, int act_h, int act_y, Tensor(b!) y, Tensor? lengths) -> ()",
        &jordan_forward);
  m.def("jordan_backward(Tensor(a!) da, Tensor(b!) dout, Tensor hs, Tensor? y, Tensor dy, Tensor dstate, "
        "Tensor d_final, Tensor w_yh_t, Tensor? packed, Tensor w_hy_t, Tensor? packed_out, int act_h, int act_y, int t0, "
        "int t1, Tensor? lengths, Tensor? norms) -> (Tensor, Tensor, Tensor)",
        &jordan_backward);
  m.def("jordan_sums(Tensor da, Tensor(e!) dout, Tensor hs, Tensor? prev, Tensor x, int t0, int t1, bool onednn, "
        "Tensor(a!) g_ih, Tensor(b!) g_rec, Tensor(c!) g_hy, Tensor(d!) dx, Tensor w_ih, Tensor? blocks) -> ()",
        &jordan_sums);
}

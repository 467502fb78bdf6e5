// Jordan's pass (engine/jordan.py): its loops (see common.h for the layout and the helpers), its products over
// time, and the op that runs both, with its autograd node in C++.

#include <torch/csrc/autograd/custom_function.h>

#include "common.h"

namespace {

// -------------------------------------------------------------------------------------------- Jordan
// h = σ_h(xp + y_prev W_yhᵀ), written over XP[t]; y = σ_y(h W_hyᵀ + b_y), into Y[t].

template <typename T, int AH, int AY>
void jordan_forward_t(const at::Tensor& XP, const at::Tensor& y0, const at::Tensor& Wyh,
                      const std::optional<at::Tensor>& packed, const at::Tensor& Why,
                      const std::optional<at::Tensor>& packed_out, const std::optional<at::Tensor>& bias_y,
                      const at::Tensor& Y, const Lengths& len) {
  const int64_t S = XP.size(0), B = XP.size(1), H = XP.size(2), O = Y.size(2), la = XP.stride(1), ys = Y.stride(1);
  const T* by = bias_y ? bias_y->data_ptr<T>() : nullptr;
  for (int64_t t = 0; t < S; ++t) {
    T *a = step_ptr<T>(XP, t), *y = step_ptr<T>(Y, t);
    const T* y_prev = t == 0 ? y0.data_ptr<T>() : step_ptr<T>(Y, t - 1);
    step_product(y_prev, B, t == 0 ? O : ys, Wyh, packed, a, la, true);  // xp_t + y_{t-1} W_yhᵀ, over xp_t
    each_row(B, H, [&](int64_t b) {
      T* ab = a + b * la;
      if (len.past(t, b)) {  // h = 0 past the row's end: the backward's products over all steps then skip it
        std::fill(ab, ab + H, T(0));
        return;
      }
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) ab[j] = act<AH>(ab[j]);
    });
    step_product<T>(a, B, la, Why, packed_out, y, ys, false);  // h_t W_hyᵀ, into Y[t]
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
  check_rows(XP, XP.sizes(), XP.scalar_type()), check_state(y0, XP, XP.size(1), O);
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

// The backward pass, whole. Layout: h_t (Hs), the outputs (Y, kept only for a σ_y other than the identity), X and
// ∂L/∂Y are batch-first tensors (B, T, ·) seen time-major, as the layer's input and output lie; ∂L/∂a goes into a
// batch-first dA. Each step back, per row: ∂o = σ_y'(∂y_t + dy) (into a row of scratch, or of dO where the products
// need it), ∂h = ∂o W_hy into dA, ∂a = σ_h'(∂h), ∂y_{t-1} = ∂a W_yh; the biases' sums as the rows are written.
template <typename T, int AH, int AY>
at::Tensor jordan_steps_back(const at::Tensor& dA, const at::Tensor& dO, const at::Tensor& Hs, const at::Tensor& Y,
                             const at::Tensor& dY, at::Tensor dy_state, const at::Tensor& d_final,
                             const at::Tensor& Wyh_t, const std::optional<at::Tensor>& packed, const at::Tensor& Why_t,
                             const std::optional<at::Tensor>& packed_out, const BiasSums& sums,
                             const BiasSums& out_sums, const Lengths& len, const StepNorms& norms, bool to_y0) {
  const int64_t S = Hs.size(0), B = Hs.size(1), H = Hs.size(2), O = dY.size(2), lh = Hs.stride(1);
  const int64_t lo = dO.dim() == 3 ? dO.stride(1) : O, ly = Y.defined() ? Y.stride(1) : O;
  const Rows<T> dy(dY);
  at::Tensor next[2];
  for (int64_t t = S - 1; t >= 0; --t) {
    const T* y = Y.defined() ? step_ptr<T>(Y, t) : nullptr;
    T *o = dO.dim() == 3 ? step_ptr<T>(dO, t) : dO.data_ptr<T>(), *da = step_ptr<T>(dA, t);
    back_through_output<AY>(t, B, O, y, ly, dy, dy_state, d_final, o, lo, len, norms, &out_sums);
    step_product(o, B, lo, Why_t, packed_out, da, lh, false);  // ∂h = ∂o W_hy, into dA
    const T* h = step_ptr<T>(Hs, t);
    each_row(B, H, [&](int64_t b) {
      double* sb = sums.mine();
      const int64_t r = b * lh;
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
    if (t > 0 || to_y0) dy_state = product_next(next, t, da, B, lh, Wyh_t, packed);  // ∂y_0 only where wanted
  }
  return dy_state;
}

// Each batch row's row of a batch-first t (B, T, W) at its own last step: (B, W), a view where there are no lengths
at::Tensor last_step_rows(const at::Tensor& t, const std::optional<at::Tensor>& lengths) {
  const int64_t B = t.size(0), S = t.size(1);
  if (!lengths) return t.select(1, S - 1);
  return t.reshape({B * S, t.size(2)}).index_select(0, at::arange(B, lengths->options()) * S + *lengths - 1);
}

// Whether every element of a contiguous t is zero (a scan)
bool all_zero(const at::Tensor& t) {
  return AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "all_zero", [&] {
    const scalar_t* p = t.data_ptr<scalar_t>();
    return std::all_of(p, p + t.numel(), [](scalar_t v) { return v == scalar_t(0); });
  });
}

// Σ_t d_tᵀ r_{t-1} over t ≥ 1 for batch-first d and r (B, T, ·): one product of the rows shifted by one, which pairs each
// row's step 0 with the previous row's last step, less those B - 1 pairs
at::Tensor shifted_sum(const at::Tensor& d, const at::Tensor& r, bool onednn) {
  const int64_t B = d.size(0), T = d.size(1), n = B * T;
  at::Tensor out = at::empty({d.size(2), r.size(2)}, d.options());
  product(d.reshape({n, -1}).narrow(0, 1, n - 1).t(), r.reshape({n, -1}).narrow(0, 0, n - 1), out, false, onednn);
  if (B > 1) out.addmm_(d.select(1, 0).narrow(0, 1, B - 1).t(), r.select(1, T - 1).narrow(0, 0, B - 1), 1, -1);
  return out;
}

enum Wanted : int64_t {  // `wanted`'s bits: the gradients asked for, and how to take them
  WANT_X = 1, WANT_IH = 2, WANT_YH = 4, WANT_HY = 8, WANT_Y0 = 16,
  KEEP_DO = 32,     // keep ∂o for W_hy's gradient even with an identity output
  NO_D_FINAL = 64,  // ∂L/∂ the final state is zero
};

// The backward pass: the steps back (above), then the products over time, each one product over all B T rows:
// W_ih's Σ ∂a_tᵀ x_t; W_yh's Σ ∂a_tᵀ y_{t-1} (shifted_sum; with an identity output, from the h_t, as y_{t-1} = W_hy
// h_{t-1} + b_y: S W_hyᵀ + (Σ_{t≥1} ∂a_t) b_yᵀ with S = Σ_{t≥1} ∂a_tᵀ h_{t-1}), plus ∂a_0ᵀ y_0; W_hy's Σ ∂o_tᵀ h_t
// from the ∂o kept by the steps back; or, with an identity output, where the caller asks no ∂o kept (engine/jordan.py
// says where that is faster): ∂o_t = ∂y_t + ∂a_{t+1} W_yh, and ∂L/∂ the final state at a row's last step, so
// Σ ∂y_tᵀ h_t + W_yhᵀ S + Σ_b ∂y_T,bᵀ h_last,b, with h_t = 0 past a row's end, jordan_forward); the biases' sums;
// ∂X = ∂A W_ih. Returns (∂X, ∂y_0, ∂W_ih, ∂b, ∂W_yh, ∂W_hy, ∂b_y), those not wanted undefined.

std::vector<at::Tensor> jordan_backward(const at::Tensor& Hs, const std::optional<at::Tensor>& y, const at::Tensor& X,
                                        const at::Tensor& y0, const at::Tensor& dY, const at::Tensor& d_final,
                                        const at::Tensor& Wih, const std::optional<at::Tensor>& ih_blocks,
                                        const at::Tensor& Wyh_t, const std::optional<at::Tensor>& packed,
                                        const at::Tensor& Why_t, const std::optional<at::Tensor>& packed_out,
                                        const std::optional<at::Tensor>& bias_y, int64_t act_h, int64_t act_y,
                                        int64_t wanted, bool onednn, const std::optional<at::Tensor>& lengths,
                                        const std::optional<at::Tensor>& norms) {
  const int64_t S = Hs.size(0), B = Hs.size(1), H = Hs.size(2), O = Why_t.size(1), F = X.size(2);
  const auto batch_first = [&](const at::Tensor& t, int64_t width) {
    return t.dim() == 3 && t.size(0) == S && t.size(1) == B && t.size(2) == width && t.transpose(0, 1).is_contiguous() &&
           t.device().is_cpu() && t.scalar_type() == Hs.scalar_type();
  };
  TORCH_CHECK(batch_first(Hs, H) && batch_first(X, F) && batch_first(dY, O) && (!y || batch_first(*y, O)),
              "unrolled native engine: jordan_backward's h, x, ∂L/∂y (and y) must be batch-first CPU tensors (B, T, ·) "
              "seen time-major, of one dtype");
  TORCH_CHECK(y || act_y == IDENTITY, "jordan_backward: the outputs are needed for a non-identity output activation");
  const bool want_x = wanted & WANT_X, want_ih = wanted & WANT_IH, want_yh = wanted & WANT_YH,
             want_hy = wanted & WANT_HY, want_y0 = wanted & WANT_Y0;
  check_state(y0, Hs, B, O), check_state(d_final, Hs, B, O);
  check_lengths(lengths, B, S);
  check_weight(Wyh_t, packed, O, H), check_weight(Why_t, packed_out, H, O), check_weight(Wih, std::nullopt, H, F);
  TORCH_CHECK(!bias_y || (bias_y->numel() == O && bias_y->scalar_type() == Hs.scalar_type()), "jordan_backward: bias");
  const bool identity = !y, keep_dO = want_hy && (!identity || wanted & KEEP_DO);
  const at::TensorOptions opt = Hs.options();
  const at::Tensor Y = y ? *y : at::Tensor();
  at::Tensor dA = at::empty({B, S, H}, opt).transpose(0, 1), d0 = want_y0 ? at::empty({B, O}, opt) : at::Tensor();
  at::Tensor dO = keep_dO ? at::empty({B, S, O}, opt).transpose(0, 1) : at::Tensor();
  const at::Tensor d_fin = d_final.contiguous(), y_0 = y0.contiguous();
  const BiasSums sums(Hs, 1, H), out_sums(Hs, 1, O);
  const StepNorms step_norms(norms, Hs, S);
  with_act(act_h, [&](auto AH) {
    with_act(act_y, [&](auto AY) {
      AT_DISPATCH_FLOATING_TYPES(Hs.scalar_type(), "jordan_backward", [&] {
        over_rows(B, is_blocks(packed) && is_blocks(packed_out), [&](int64_t b0, int64_t b1) {
          // ∂o's rows: of dO, or of a scratch row block reused step after step
          const at::Tensor o = keep_dO ? rows(dO, b0, b1) : at::empty({b1 - b0, O}, opt);
          const at::Tensor d = jordan_steps_back<scalar_t, decltype(AH)::value, decltype(AY)::value>(
              rows(dA, b0, b1), o, rows(Hs, b0, b1), y ? rows(Y, b0, b1) : Y, rows(dY, b0, b1),
              rows(d_fin, b0, b1), rows(d_fin, b0, b1), Wyh_t, packed, Why_t, packed_out, sums, out_sums,
              Lengths(lengths, b0), step_norms, want_y0);  // the running ∂y starts as the final state's
          if (want_y0) rows(d0, b0, b1).copy_(d);
        });
      });
    });
  });
  step_norms.write(0, S);
  const int64_t n = B * S;
  const at::Tensor da = dA.transpose(0, 1), hs = Hs.transpose(0, 1), rows_a = da.reshape({n, H});  // (B, T, ·)
  const at::Tensor g_b = sums.total(1).view({H}), g_by = out_sums.total(1).view({O});
  at::Tensor g_ih, g_yh, g_hy, dX;  // undefined where not wanted
  if (want_ih) {
    g_ih = at::empty({H, F}, opt);
    product(rows_a.t(), X.transpose(0, 1).reshape({n, F}), g_ih, false, onednn);
  }
  const at::Tensor da0 = da.select(1, 0);  // ∂a_0, (B, H)
  if (keep_dO) {
    g_hy = at::empty({O, H}, opt);
    product(dO.transpose(0, 1).reshape({n, O}).t(), hs.reshape({n, H}), g_hy, false, onednn);
  }
  if (!identity) {
    if (want_yh) g_yh = shifted_sum(da, Y.transpose(0, 1), onednn);
  } else if (want_yh || (want_hy && !keep_dO)) {
    const at::Tensor s = shifted_sum(da, hs, onednn);  // S = Σ_{t≥1} ∂a_tᵀ h_{t-1}
    if (want_yh) {
      g_yh = at::empty({H, O}, opt);
      product(s, Why_t, g_yh, false, onednn);  // S W_hyᵀ
      if (bias_y) g_yh.addr_(g_b - da0.sum(0), *bias_y);
    }
    if (want_hy && !keep_dO) {
      g_hy = at::empty({O, H}, opt);
      product(dY.transpose(0, 1).reshape({n, O}).t(), hs.reshape({n, H}), g_hy, false, onednn);
      product(Wyh_t, s, g_hy, true, onednn);  // W_yhᵀ S
      if (!(wanted & NO_D_FINAL)) g_hy.addmm_(d_fin.t(), last_step_rows(hs, lengths));  // where ∂L/∂ y_T enters
    }
  }
  // ∂a_0ᵀ y_0 into W_yh's gradient, unless y_0 is zero (the usual initial state: a scan, against a product)
  if (want_yh && !all_zero(y_0)) g_yh.addmm_(da0.t(), y_0);
  if (want_x) {
    dX = at::empty({B, S, F}, opt);
    if (is_blocks(ih_blocks)) {
      TORCH_CHECK(ih_blocks->size(1) == H && ih_blocks->size(0) * ih_blocks->size(2) == F, "jordan_backward: W_ih's blocks");
      tiled_product(rows_a.data_ptr<float>(), 1, n, 0, H, *ih_blocks, dX.data_ptr<float>(), 0, F, false, nullptr);
    } else {
      at::Tensor rows_x = dX.view({n, F});
      at::mm_out(rows_x, rows_a, Wih);
    }
  }
  return {dX, d0, g_ih, g_b, g_yh, g_hy, g_by};
}

// ------------------------------------------------------------------------------- the pass, an autograd node in C++
// engine/jordan.py's one call: the input projection and the steps forward, saving h_t (and the outputs where σ_y'
// reads them); back, jordan_backward. Weights go to the micro-kernel as blocks of nb (by rows: nb[0] for H, nb[1]
// for O, nb[2] for F; 0: no blocks, torch's products), made here for each pass. No Python runs between the two.

std::optional<at::Tensor> blocks_if(const at::Tensor& w, int64_t nb) {
  return nb > 0 ? std::optional<at::Tensor>(blocks(w, nb)) : std::nullopt;
}

// (h_t, y_t) for every step, batch-first (B, T, ·)
std::pair<at::Tensor, at::Tensor> jordan_run(const at::Tensor& xs, const at::Tensor& y0, const at::Tensor& w_ih,
                                             const std::optional<at::Tensor>& b, const at::Tensor& w_yh,
                                             const at::Tensor& w_hy, const std::optional<at::Tensor>& b_y,
                                             int64_t act_h, int64_t act_y, const std::vector<int64_t>& nb,
                                             const std::optional<at::Tensor>& lengths) {
  const int64_t B = xs.size(0), S = xs.size(1), F = xs.size(2), H = w_ih.size(0), O = w_hy.size(0);
  check_weight(w_ih, std::nullopt, H, F);
  at::Tensor hs;
  if (nb[0] > 0) {  // a_t = x_t W_ihᵀ + b on the micro-kernel, read and written batch-first
    TORCH_CHECK(xs.scalar_type() == at::kFloat && (!b || (b->numel() == H && b->scalar_type() == at::kFloat)),
                "jordan_pass: float32 x and bias for the micro-kernel");
    hs = at::empty({B, S, H}, xs.options());
    const at::Tensor bias = b ? b->contiguous() : at::Tensor();
    tiled_product(xs.data_ptr<float>(), S, B, F, S * F, blocks(w_ih, nb[0]), hs.data_ptr<float>(), H, S * H, false,
                  b ? bias.data_ptr<float>() : nullptr);
  } else {
    hs = at::linear(xs, w_ih, b);
  }
  at::Tensor Y = at::empty({B, S, O}, xs.options());
  jordan_forward(hs.transpose(0, 1), y0, w_yh, blocks_if(w_yh, nb[0]), w_hy, blocks_if(w_hy, nb[1]), b_y, act_h, act_y,
                 Y.transpose(0, 1), lengths);
  return {hs, Y};
}

struct JordanPass : public torch::autograd::Function<JordanPass> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& xs,
                                                const at::Tensor& y0, const at::Tensor& w_ih,
                                                const std::optional<at::Tensor>& b, const at::Tensor& w_yh,
                                                const at::Tensor& w_hy, const std::optional<at::Tensor>& b_y,
                                                int64_t act_h, int64_t act_y, const std::vector<int64_t>& nb,
                                                const std::optional<at::Tensor>& lengths,
                                                const std::optional<at::Tensor>& norms, bool keep_do, bool onednn) {
    TORCH_CHECK(xs.dim() == 3 && nb.size() == 3, "jordan_pass: xs (B, T, F) and three block sizes");
    const at::Tensor x = xs.contiguous();
    auto [hs, Y] = jordan_run(x, y0, w_ih, b, w_yh, w_hy, b_y, act_h, act_y, nb, lengths);
    const int64_t wanted = (xs.requires_grad() ? WANT_X : 0) | (w_ih.requires_grad() ? WANT_IH : 0) |
                           (w_yh.requires_grad() ? WANT_YH : 0) | (w_hy.requires_grad() ? WANT_HY : 0) |
                           (y0.requires_grad() ? WANT_Y0 : 0) | (keep_do ? KEEP_DO : 0);
    ctx->saved_data["hs"] = hs;
    ctx->saved_data["wanted"] = wanted;
    ctx->saved_data["acts"] = std::vector<int64_t>{act_h, act_y};
    ctx->saved_data["nb"] = nb;
    ctx->saved_data["lengths"] = lengths;
    ctx->saved_data["norms"] = norms;
    ctx->saved_data["onednn"] = onednn;
    const bool keep_y = act_y != IDENTITY;  // σ_y' reads the outputs; with the identity they go when the caller drops them
    ctx->save_for_backward({x, y0, keep_y ? Y : at::Tensor(), w_ih, b ? *b : at::Tensor(), w_yh, w_hy,
                            b_y ? *b_y : at::Tensor()});
    const at::Tensor final = last_step_rows(Y, lengths);  // each row's y at its own last step
    return {Y, lengths ? final : final.clone()};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "unrolled: the bptt engine's Jordan backward is not itself differentiable (create_graph=True, second "
                "derivatives): use backend='reference'");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xs = saved[0], &y0 = saved[1], &w_ih = saved[3], &w_yh = saved[5], &w_hy = saved[6];
    const std::optional<at::Tensor> b = saved[4].defined() ? std::optional<at::Tensor>(saved[4]) : std::nullopt,
                                    b_y = saved[7].defined() ? std::optional<at::Tensor>(saved[7]) : std::nullopt;
    const auto acts = ctx->saved_data["acts"].toIntVector(), nb = ctx->saved_data["nb"].toIntVector();
    const auto lengths = ctx->saved_data["lengths"].toOptional<at::Tensor>();
    at::Tensor Y = saved[2], hs;
    if (ctx->saved_data["hs"].isTensor()) {
      hs = ctx->saved_data["hs"].toTensor();
    } else {  // a second backward through the pass (retain_graph, gradcheck): what the first used up, again
      std::tie(hs, Y) = jordan_run(xs, y0, w_ih, b, w_yh, w_hy, b_y, acts[0], acts[1], nb, lengths);
      if (acts[1] == IDENTITY) Y = at::Tensor();
    }
    ctx->saved_data["hs"] = c10::IValue();  // freed as the backward goes
    const int64_t B = xs.size(0), S = xs.size(1), O = w_hy.size(0);
    const at::Tensor dys = grads[0].defined() ? grads[0].contiguous() : at::zeros({B, S, O}, xs.options());
    const at::Tensor d_final = grads[1].defined() ? grads[1] : at::zeros({B, O}, xs.options());
    const auto g = jordan_backward(
        hs.transpose(0, 1), Y.defined() ? std::optional<at::Tensor>(Y.transpose(0, 1)) : std::nullopt,
        xs.transpose(0, 1), y0, dys.transpose(0, 1), d_final, w_ih, blocks_if(w_ih.t(), nb[2]), w_yh.t(),
        blocks_if(w_yh.t(), nb[1]), w_hy.t(), blocks_if(w_hy.t(), nb[0]), b_y, acts[0], acts[1],
        ctx->saved_data["wanted"].toInt() | (grads[1].defined() ? 0 : NO_D_FINAL), ctx->saved_data["onednn"].toBool(),
        lengths, ctx->saved_data["norms"].toOptional<at::Tensor>());
    const at::Tensor none;
    // xs, y0, w_ih, b, w_yh, w_hy, b_y, then the arguments that are not tensors or take no gradient
    return {g[0], g[1], g[2], b ? g[3] : none, g[4], g[5], b_y ? g[6] : none, none, none, none, none, none, none, none};
  }
};

std::tuple<at::Tensor, at::Tensor> jordan_pass(const at::Tensor& xs, const at::Tensor& y0, const at::Tensor& w_ih,
                                               const std::optional<at::Tensor>& b, const at::Tensor& w_yh,
                                               const at::Tensor& w_hy, const std::optional<at::Tensor>& b_y,
                                               int64_t act_h, int64_t act_y, std::vector<int64_t> nb,
                                               const std::optional<at::Tensor>& lengths,
                                               const std::optional<at::Tensor>& norms, bool keep_do, bool onednn) {
  auto out = JordanPass::apply(xs, y0, w_ih, b, w_yh, w_hy, b_y, act_h, act_y, nb, lengths, norms, keep_do, onednn);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(unrolled, m) {
  m.def("jordan_pass(Tensor xs, Tensor y0, Tensor w_ih, Tensor? b, Tensor w_yh, Tensor w_hy, Tensor? b_y, int act_h, "
        "int act_y, int[] nb, Tensor? lengths, Tensor? norms, bool keep_do, bool onednn) -> (Tensor, Tensor)",
        &jordan_pass);
}

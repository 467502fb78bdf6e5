// The LSTM's and the GRU's loops (see common.h for the layout and the helpers).

#include "common.h"

namespace {

// ---------------------------------------------------------------------------------------------- LSTM
// z = xp + h W_hhᵀ; i, f, o = σ(z_i, z_f, z_o), g = tanh z_g; c = f c_prev + i g; h = o tanh c.
// Saves the gates over XP[t] and c_t into C[t].

template <typename T>
void lstm_forward_t(const at::Tensor& XP, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& W,
                    const std::optional<at::Tensor>& packed, const at::Tensor& Y, const at::Tensor& C,
                    const Lengths& len) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2);
  for (int64_t t = 0; t < S; ++t) {
    T* z = step_ptr<T>(XP, t);
    const T* hp = t == 0 ? h0.data_ptr<T>() : step_ptr<T>(Y, t - 1);
    step_product(hp, B, H, W, packed, z, 4 * H, true);  // z_t = xp_t + h W_hhᵀ, over xp_t
    const T* cp = t == 0 ? c0.data_ptr<T>() : step_ptr<T>(C, t - 1);
    T* cn = step_ptr<T>(C, t);
    T* y = step_ptr<T>(Y, t);
    each_row(B, 4 * H, [&](int64_t b) {
      T* zb = z + b * 4 * H;
      const T* cpb = cp + b * H;
      T* cb = cn + b * H;
      T* yb = y + b * H;
      if (len.past(t, b)) {  // the row's sequence has ended: c kept, output 0
        std::copy(cpb, cpb + H, cb), std::fill(yb, yb + H, T(0));
        return;
      }
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T i = sigm(zb[j]);
        T f = sigm(zb[H + j]);
        T g = tanh2(zb[2 * H + j]);
        T o = sigm(zb[3 * H + j]);
        T c = f * cpb[j] + i * g;
        zb[j] = i, zb[H + j] = f, zb[2 * H + j] = g, zb[3 * H + j] = o;
        cb[j] = c;
        yb[j] = o * tanh2(c);
      }
    });
  }
}

void lstm_forward(at::Tensor XP, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& W,
                  const std::optional<at::Tensor>& packed, at::Tensor Y, at::Tensor C,
                  const std::optional<at::Tensor>& lengths) {
  const int64_t H = Y.size(2);
  check({XP, Y, C}, {{h0, H}, {c0, H}});
  check_lengths(lengths, XP.size(1), XP.size(0));
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, 4 * H), check_width(C, H), check_weight(W, packed, 4 * H, H);
  const at::Tensor h_0 = h0.contiguous(), c_0 = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "lstm_forward", [&] {
    over_rows(XP.size(1), is_blocks(packed), [&](int64_t b0, int64_t b1) {
      lstm_forward_t<scalar_t>(rows(XP, b0, b1), rows(h_0, b0, b1), rows(c_0, b0, b1), W, packed, rows(Y, b0, b1),
                               rows(C, b0, b1), Lengths(lengths, b0));
    });
  });
}

// Back from ∂L/∂h_t, ∂L/∂c_t (dh, dc: the last step's on entry, ∂L/∂h_0, ∂L/∂c_0 on return):
// dh += dy; dc += dh o (1 − tanh²c); d i, d f, d g, d o through σ' and tanh', written over the gates;
// ∂c_{t-1} = dc f; ∂h_{t-1} = ∂z W_hh.
template <typename T>
void lstm_backward_t(const at::Tensor& XP, const at::Tensor& C, const at::Tensor& c0, const at::Tensor& dY,
                     at::Tensor& dh, const at::Tensor& dc, const at::Tensor& Wt, const std::optional<at::Tensor>& packed,
                     const BiasSums& sums, const Lengths& len, const StepNorms& norms) {
  const int64_t S = XP.size(0), B = XP.size(1), H = C.size(2);
  const Rows<T> dy(dY);
  T* dcp = dc.data_ptr<T>();
  const at::Tensor final = dh;  // ∂L/∂h_final: dh is replaced step by step, this handle keeps it
  const T* dh_final = final.data_ptr<T>();
  at::Tensor next[2];
  for (int64_t t = S - 1; t >= 0; --t) {
    T* z = step_ptr<T>(XP, t);
    const T* cp = t == 0 ? c0.data_ptr<T>() : step_ptr<T>(C, t - 1);
    const T* ct = step_ptr<T>(C, t);
    const T* dhp = dh.data_ptr<T>();
    each_row(B, 4 * H, [&](int64_t b) {
      T* zb = z + b * 4 * H;
      if (len.past(t, b)) {  // nothing flows through a step past the row's end (dc stays ∂L/∂c_final)
        std::fill(zb, zb + 4 * H, T(0));
        return;
      }
      const T *cpb = cp + b * H, *cb = ct + b * H, *dyb = dy(t, b);
      const T* dhb = (len.last(t, b) ? dh_final : dhp) + b * H;
      T* dcb = dcp + b * H;
      double* sb = sums.mine();
      T squares = 0;
#pragma omp simd reduction(+ : squares)
      for (int64_t j = 0; j < H; ++j) {
        T i = zb[j], f = zb[H + j], g = zb[2 * H + j], o = zb[3 * H + j];
        T tc = tanh2(cb[j]);
        T d = dhb[j] + dyb[j];
        squares += d * d;
        T dct = dcb[j] + d * o * (T(1) - tc * tc);
        zb[j] = dct * g * i * (T(1) - i);
        zb[H + j] = dct * cpb[j] * f * (T(1) - f);
        zb[2 * H + j] = dct * i * (T(1) - g * g);
        zb[3 * H + j] = d * tc * o * (T(1) - o);
        dcb[j] = dct * f;
        sb[j] += zb[j], sb[H + j] += zb[H + j], sb[2 * H + j] += zb[2 * H + j], sb[3 * H + j] += zb[3 * H + j];
      }
      norms.add(t, squares);
    });
    dh = product_next(next, t, z, B, 4 * H, Wt, packed);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_backward(at::Tensor XP, const at::Tensor& C, const at::Tensor& c0,
                                                 const at::Tensor& dY, const at::Tensor& dhT, const at::Tensor& dcT,
                                                 const at::Tensor& Wt, const std::optional<at::Tensor>& packed,
                                                 const std::optional<at::Tensor>& lengths,
                                                 const std::optional<at::Tensor>& norms) {
  const int64_t H = C.size(2);
  check({XP, C}, {{c0, H}, {dhT, H}, {dcT, H}});
  check_lengths(lengths, XP.size(1), XP.size(0));
  check_rows(dY, C);
  check_width(XP, 4 * H), check_weight(Wt, packed, H, 4 * H);
  at::Tensor dh = dhT.clone(at::MemoryFormat::Contiguous), dc = dcT.clone(at::MemoryFormat::Contiguous);
  const BiasSums sums(XP, 1, XP.size(2));
  const StepNorms step_norms(norms, XP, XP.size(0));
  const at::Tensor c_0 = c0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "lstm_backward", [&] {
    over_rows(XP.size(1), is_blocks(packed), [&](int64_t b0, int64_t b1) {
      at::Tensor dh_rows = rows(dh, b0, b1);  // replaced step by step: its last value is copied back
      lstm_backward_t<scalar_t>(rows(XP, b0, b1), rows(C, b0, b1), rows(c_0, b0, b1), rows(dY, b0, b1), dh_rows,
                                rows(dc, b0, b1), Wt, packed, sums, Lengths(lengths, b0), step_norms);
      rows(dh, b0, b1).copy_(dh_rows);
    });
  });
  step_norms.write(0, XP.size(0));
  return {dh, dc, sums.total(1)};
}

// ----------------------------------------------------------------------------------------------- GRU
// rp = h W_hhᵀ + b_hh; r, u = σ(xp_r + rp_r, xp_u + rp_u); n = tanh(xp_n + r rp_n); h = n + u (h_prev − n).
// Saves r, u, n over XP[t] and rp_n into HN[t].

template <typename T>
void gru_forward_t(const at::Tensor& XP, const at::Tensor& h0, const at::Tensor& W,
                   const std::optional<at::Tensor>& packed, const std::optional<at::Tensor>& bias, const at::Tensor& Y,
                   const at::Tensor& HN, const Lengths& len) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2);
  const at::Tensor b_hh = bias ? bias->contiguous() : at::zeros({3 * H}, XP.options());
  const T* bh = b_hh.data_ptr<T>();
  at::Tensor rp = at::empty({B, 3 * H}, XP.options());  // h W_hhᵀ, one step's, in place step after step
  for (int64_t t = 0; t < S; ++t) {
    const T* hp = t == 0 ? h0.data_ptr<T>() : step_ptr<T>(Y, t - 1);
    step_product(hp, B, H, W, packed, rp.data_ptr<T>(), 3 * H, false);
    T* x = step_ptr<T>(XP, t);
    const T* mm = rp.data_ptr<T>();
    T *hn = step_ptr<T>(HN, t), *y = step_ptr<T>(Y, t);
    each_row(B, 3 * H, [&](int64_t b) {
      T *xb = x + b * 3 * H, *hnb = hn + b * H, *yb = y + b * H;
      const T *mb = mm + b * 3 * H, *hpb = hp + b * H;
      if (len.past(t, b)) {  // the row's sequence has ended: output 0 (its state is read at its last step)
        std::fill(yb, yb + H, T(0));
        return;
      }
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        T r = sigm(xb[j] + mb[j] + bh[j]);
        T u = sigm(xb[H + j] + mb[H + j] + bh[H + j]);
        T rn = mb[2 * H + j] + bh[2 * H + j];  // W_hn h + b_hn
        T nn = tanh2(xb[2 * H + j] + r * rn);
        xb[j] = r, xb[H + j] = u, xb[2 * H + j] = nn;
        hnb[j] = rn;
        yb[j] = nn + u * (hpb[j] - nn);
      }
    });
  }
}

void gru_forward(at::Tensor XP, const at::Tensor& h0, const at::Tensor& W, const std::optional<at::Tensor>& packed,
                 const std::optional<at::Tensor>& bias, at::Tensor Y, at::Tensor HN,
                 const std::optional<at::Tensor>& lengths) {
  const int64_t H = Y.size(2);
  check({XP, Y, HN}, {{h0, H}});
  check_lengths(lengths, XP.size(1), XP.size(0));
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, 3 * H), check_width(HN, H), check_weight(W, packed, 3 * H, H);
  TORCH_CHECK(!bias || (bias->numel() == 3 * H && bias->scalar_type() == XP.scalar_type()), "gru_forward: bias");
  const at::Tensor h_0 = h0.contiguous();
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "gru_forward", [&] {
    over_rows(XP.size(1), is_blocks(packed), [&](int64_t b0, int64_t b1) {
      gru_forward_t<scalar_t>(rows(XP, b0, b1), rows(h_0, b0, b1), W, packed, bias, rows(Y, b0, b1), rows(HN, b0, b1),
                              Lengths(lengths, b0));
    });
  });
}

// d = ∂h + dy; ∂u = d (h_prev − n) u(1 − u); ∂n = d (1 − u)(1 − n²); ∂r = ∂n rp_n r(1 − r);
// ∂xp = (∂r, ∂u, ∂n) over XP[t]; ∂rp = (∂r, ∂u, ∂n r), of which only ∂n r is new: it goes over rp_n in HN[t]
// (read by then) for W_hh's gradient, and the whole row, for the product, into one step's scratch;
// ∂h_{t-1} = d u + ∂rp W_hh.
template <typename T>
at::Tensor gru_backward_t(const at::Tensor& XP, const at::Tensor& HN, const at::Tensor& Y, const at::Tensor& h0,
                          const at::Tensor& dY, at::Tensor dh, const at::Tensor& Wt,
                          const std::optional<at::Tensor>& packed, const BiasSums& sums, const Lengths& len,
                          const StepNorms& norms) {
  const int64_t S = XP.size(0), B = XP.size(1), H = Y.size(2);
  const Rows<T> dy(dY);
  const at::Tensor final = dh;  // ∂L/∂h_final: dh is replaced step by step, this handle keeps it
  at::Tensor direct = at::empty_like(dh), drp = at::empty({B, 3 * H}, XP.options());
  T *dd = direct.data_ptr<T>(), *dr = drp.data_ptr<T>();
  for (int64_t t = S - 1; t >= 0; --t) {
    T *x = step_ptr<T>(XP, t), *hn = step_ptr<T>(HN, t);
    const T* running = dh.data_ptr<T>();
    const T* hp = t == 0 ? h0.data_ptr<T>() : step_ptr<T>(Y, t - 1);
    each_row(B, 3 * H, [&](int64_t b) {
      // the row's pointers in locals (through captured ones GCC vectorised with gathers and scatters)
      T *xb = x + b * 3 * H, *drb = dr + b * 3 * H, *hnb = hn + b * H, *ddb = dd + b * H;
      double *sx = sums.mine(), *sr = sx + 3 * H;
      if (len.past(t, b)) {  // nothing flows through a step past the row's end
        std::fill(xb, xb + 3 * H, T(0)), std::fill(drb, drb + 3 * H, T(0));
        std::fill(ddb, ddb + H, T(0)), std::fill(hnb, hnb + H, T(0));
        return;
      }
      const T *dyb = dy(t, b), *hpb = hp + b * H;
      const T* d = (len.last(t, b) ? final.data_ptr<T>() : running) + b * H;
      T squares = 0;
#pragma omp simd reduction(+ : squares)
      for (int64_t j = 0; j < H; ++j) {
        T r = xb[j], u = xb[H + j], nn = xb[2 * H + j];
        T g = d[j] + dyb[j];
        squares += g * g;
        T dn = g * (T(1) - u) * (T(1) - nn * nn);
        T dr_ = dn * hnb[j] * r * (T(1) - r);
        T du = g * (hpb[j] - nn) * u * (T(1) - u);
        xb[j] = dr_, xb[H + j] = du, xb[2 * H + j] = dn;
        hnb[j] = dn * r;
        drb[j] = dr_, drb[H + j] = du, drb[2 * H + j] = dn * r;
        sx[j] += dr_, sx[H + j] += du, sx[2 * H + j] += dn;
        sr[j] += dr_, sr[H + j] += du, sr[2 * H + j] += dn * r;
        ddb[j] = g * u;
      }
      norms.add(t, squares);
    });
    step_product(dr, B, 3 * H, Wt, packed, dd, H, true);  // ∂h_{t-1} = d u + ∂rp W_hh, over the direct part
    dh = direct;  // the next step reads it where it writes its own direct part, element by element: no overlap
  }
  return dh;
}

std::tuple<at::Tensor, at::Tensor> gru_backward(at::Tensor XP, at::Tensor HN, const at::Tensor& Y, const at::Tensor& h0,
                                                const at::Tensor& dY, const at::Tensor& dh, const at::Tensor& Wt,
                                                const std::optional<at::Tensor>& packed,
                                                const std::optional<at::Tensor>& lengths,
                                                const std::optional<at::Tensor>& norms) {
  const int64_t H = Y.size(2);
  check({XP, HN, Y}, {{h0, H}, {dh, H}});
  check_lengths(lengths, XP.size(1), XP.size(0));
  check_rows(dY, Y);
  check_range(XP, Y, 0, XP.size(0));
  check_width(XP, 3 * H), check_width(HN, H), check_weight(Wt, packed, H, 3 * H);
  const at::Tensor out = at::empty_like(dh, at::MemoryFormat::Contiguous), h_0 = h0.contiguous(), d_h = dh.contiguous();
  const BiasSums sums(XP, 2, XP.size(2));
  const StepNorms step_norms(norms, XP, XP.size(0));
  AT_DISPATCH_FLOATING_TYPES(XP.scalar_type(), "gru_backward", [&] {
    over_rows(XP.size(1), is_blocks(packed), [&](int64_t b0, int64_t b1) {
      rows(out, b0, b1).copy_(gru_backward_t<scalar_t>(rows(XP, b0, b1), rows(HN, b0, b1), rows(Y, b0, b1),
                                                       rows(h_0, b0, b1), rows(dY, b0, b1), rows(d_h, b0, b1), Wt,
                                                       packed, sums, Lengths(lengths, b0), step_norms));
    });
  });
  step_norms.write(0, XP.size(0));
  return {out, sums.total(2)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(unrolled, m) {
  m.def("lstm_forward(Tensor(a!) xp, Tensor h0, Tensor c0, Tensor w, Tensor? packed, Tensor(b!) y, Tensor(c!) c, "
        "Tensor? lengths) -> ()",
        &lstm_forward);
  m.def("lstm_backward(Tensor(a!) xp, Tensor c, Tensor c0, Tensor dy, Tensor dh, Tensor dc, Tensor wt, Tensor? packed, "
        "Tensor? lengths, Tensor? norms) -> (Tensor, Tensor, Tensor)",
        &lstm_backward);
  m.def("gru_forward(Tensor(a!) xp, Tensor h0, Tensor w, Tensor? packed, Tensor? bias, Tensor(b!) y, Tensor(c!) hn, "
        "Tensor? lengths) -> ()",
        &gru_forward);
  m.def("gru_backward(Tensor(a!) xp, Tensor(b!) hn, Tensor y, Tensor h0, Tensor dy, Tensor dh, Tensor wt, "
        "Tensor? packed, Tensor? lengths, Tensor? norms) -> (Tensor, Tensor)",
        &gru_backward);
}

#include "etn.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

namespace mtpfit {

namespace {
constexpr int kPad = 4;  // neighbour rows padded to whole AVX2 vectors of doubles
constexpr double kPi = 3.14159265358979323846;
// |C| below this is a zero of the quadrature (its round-off is ~1e-17; the non-zero real Gaunt coefficients of
// L ≤ 10 are larger than 1e-4)
constexpr double kGauntZero = 1e-12;

// The arithmetic the tensor train runs in. For T = Dual, mul() is the product rule; in the reverse pass of
// z = x·y the adjoint of x gains amul(z̄, y), and a real parameter p of z = p·x gains pdot(z̄, x), where a dual
// adjoint (x̄.v, x̄.d) holds the derivatives with respect to x.v and x.d.
inline Dual operator*(double a, Dual b) { return {a * b.v, a * b.d}; }
inline Dual& operator+=(Dual& a, Dual b) {
    a.v += b.v;
    a.d += b.d;
    return a;
}
inline double mul(double a, double b) { return a * b; }
inline Dual mul(Dual a, Dual b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
inline double amul(double zbar, double y) { return zbar * y; }
inline Dual amul(Dual zbar, Dual y) { return {zbar.v * y.v + zbar.d * y.d, zbar.d * y.v}; }
inline double pdot(double zbar, double x) { return zbar * x; }
inline double pdot(Dual zbar, Dual x) { return zbar.v * x.v + zbar.d * x.d; }

// Gauss–Legendre nodes and weights on [−1, 1] by Newton's iteration on P_n: exact for polynomials of degree < 2n.
void gauss_legendre(int n, std::vector<double>& x, std::vector<double>& w) {
    x.resize(n);
    w.resize(n);
    for (int i = 0; i < n; ++i) {
        double t = std::cos(kPi * (i + 0.75) / (n + 0.5)), dp = 1.0;
        for (int iter = 0; iter < 100; ++iter) {
            double p0 = 1.0, p1 = t;
            for (int k = 2; k <= n; ++k) {
                const double p2 = ((2 * k - 1) * t * p1 - (k - 1) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = n * (t * p1 - p0) / (t * t - 1.0);
            const double step = p1 / dp;
            t -= step;
            if (std::abs(step) < 1e-16) break;
        }
        x[i] = t;
        w[i] = 2.0 / ((1.0 - t * t) * dp * dp);
    }
}

// The interior core k contracts in the order h_k[l3,m3,·] = Σ_{entries} C Σ_a h_{k−1}[l1,m1,a] P[m2][a][·] with
// P[m2][a][b] = Σ_c F̃[l2,m2,c] G_k[path][a,c,b]: the Gaunt sum, which has the most terms, then runs over
// r_{k−1} × r_k values instead of r_{k−1} × n_{l2} (the ranks are the smaller), and the channel sum over whole
// contiguous rows of G. P of every path of every interior core is kept in st.coupled for the reverse pass.
template <int RP, int RK, class T>
void path_products(const EtnPath& path, const double* __restrict G, const T* __restrict f2, int n2, int rp_, int rk_,
                   T* __restrict P) {
    const int rp = RP ? RP : rp_, rk = RK ? RK : rk_;
    const int nm = 2 * path.l2 + 1, rr = rp * rk;
    std::fill(P, P + static_cast<std::size_t>(nm) * rr, T{});
    for (int m2 = 0; m2 < nm; ++m2) {
        T* Pm = P + static_cast<std::size_t>(m2) * rr;
        const T* f = f2 + static_cast<std::size_t>(m2) * n2;
        for (int a = 0; a < rp; ++a) {
            T* Pa = Pm + static_cast<std::size_t>(a) * rk;
            for (int c = 0; c < n2; ++c) {
                const double* g = G + static_cast<std::size_t>(a * n2 + c) * rk;
                const T x = f[c];
                for (int b = 0; b < rk; ++b) Pa[b] += g[b] * x;
            }
        }
    }
}

// size of P of one interior core (all its paths) in st.coupled
inline std::size_t core_products_size(const EtnModel& M, int k) {
    std::size_t n = 0;
    for (const EtnPath& p : M.paths()) n += static_cast<std::size_t>(2 * p.l2 + 1) * M.rank(k - 1) * M.rank(k);
    return n;
}

// Calls f(RP, RK) with the ranks (r_{k−1}, r_k) of an interior core as compile-time constants when they are equal
// and at most 4 (the usual shapes: the inner loops over them then unroll into registers), else as 0, for which the
// loops take the run-time values.
template <class F>
void with_ranks(int rp, int rk, F&& f) {
    using std::integral_constant;
    if (rp == 1 && rk == 1) f(integral_constant<int, 1>{}, integral_constant<int, 1>{});
    else if (rp == 2 && rk == 2) f(integral_constant<int, 2>{}, integral_constant<int, 2>{});
    else if (rp == 3 && rk == 3) f(integral_constant<int, 3>{}, integral_constant<int, 3>{});
    else if (rp == 4 && rk == 4) f(integral_constant<int, 4>{}, integral_constant<int, 4>{});
    else f(integral_constant<int, 0>{}, integral_constant<int, 0>{});
}

// V_i − ξ from st.feat; fills st.h
template <class T>
T train_forward(const EtnModel& M, const double* theta, TrainState<T>& st) {
    const int L = M.max_l(), d = M.copies();
    {
        const int r1 = M.rank(1);
        std::vector<T>& h1 = st.h[0];
        std::fill(h1.begin(), h1.end(), T{});
        for (int l = 0; l <= L; ++l) {
            const int n = M.channels_at(l);
            const double* A = theta + M.boundary_offset(l);
            for (int m = 0; m <= 2 * l; ++m) {
                const T* f = st.feat.data() + M.feature_offset(l) + m * n;
                T* out = h1.data() + (l * l + m) * r1;
                for (int c = 0; c < n; ++c) {
                    const double* Ac = A + c * r1;
                    const T fc = f[c];
                    for (int a = 0; a < r1; ++a) out[a] += Ac[a] * fc;
                }
            }
        }
    }
    T* P = st.coupled.data();
    for (int k = 2; k < d; ++k) {
        const int rp = M.rank(k - 1), rk = M.rank(k);
        const T* __restrict hp = st.h[k - 2].data();
        T* __restrict hk = st.h[k - 1].data();
        std::fill(hk, hk + st.h[k - 1].size(), T{});
        with_ranks(rp, rk, [&](auto RPc, auto RKc) {
            constexpr int RP = decltype(RPc)::value, RK = decltype(RKc)::value;
            const int rp_c = RP ? RP : rp, rk_c = RK ? RK : rk, rr = rp_c * rk_c;
            const auto& paths = M.paths();
            for (std::size_t p = 0; p < paths.size(); ++p) {
                const EtnPath& path = paths[p];
                const int n2 = M.channels_at(path.l2);
                path_products<RP, RK>(path, theta + M.path_offset(k, static_cast<int>(p)),
                                      st.feat.data() + M.feature_offset(path.l2), n2, rp, rk, P);
                for (const GauntEntry& e : path.entries) {
                    const T* hrow = hp + static_cast<std::size_t>(path.l1 * path.l1 + e.m1) * rp_c;
                    const T* Pm = P + static_cast<std::size_t>(e.m2) * rr;
                    T* out = hk + static_cast<std::size_t>(path.l3 * path.l3 + e.m3) * rk_c;
                    for (int a = 0; a < rp_c; ++a) {
                        const T x = e.value * hrow[a];
                        const T* Pa = Pm + static_cast<std::size_t>(a) * rk_c;
                        for (int b = 0; b < rk_c; ++b) out[b] += mul(x, Pa[b]);
                    }
                }
                P += static_cast<std::size_t>(2 * path.l2 + 1) * rr;
            }
        });
    }
    T V{};
    const int r = M.rank(d - 1);
    const T* hl = st.h[d - 2].data();
    for (int l = 0; l <= L; ++l) {
        const int n = M.channels_at(l);
        const double* B = theta + M.final_offset(l);
        for (int m = 0; m <= 2 * l; ++m) {
            const T* hrow = hl + (l * l + m) * r;
            const T* f = st.feat.data() + M.feature_offset(l) + m * n;
            std::fill(st.work.begin(), st.work.begin() + n, T{});
            for (int a = 0; a < r; ++a) {
                const T ha = hrow[a];
                for (int c = 0; c < n; ++c) st.work[c] += B[a * n + c] * ha;
            }
            for (int c = 0; c < n; ++c) V += mul(st.work[c], f[c]);
        }
    }
    return V;
}

// Reverse pass of train_forward() (whose st.h it reuses) seeded with V̄: st.featbar = dΦ/dF̃ and, if grad is not
// null, dΦ/d(cores) added to grad (full θ length).
template <class T>
void train_reverse(const EtnModel& M, const double* theta, TrainState<T>& st, T Vbar, double* grad) {
    const int L = M.max_l(), d = M.copies();
    std::fill(st.featbar.begin(), st.featbar.end(), T{});
    for (auto& hb : st.hbar) std::fill(hb.begin(), hb.end(), T{});
    {
        const int r = M.rank(d - 1);
        const T* hl = st.h[d - 2].data();
        T* hlbar = st.hbar[d - 2].data();
        for (int l = 0; l <= L; ++l) {
            const int n = M.channels_at(l);
            const double* B = theta + M.final_offset(l);
            double* gB = grad ? grad + M.final_offset(l) : nullptr;
            for (int m = 0; m <= 2 * l; ++m) {
                const T* hrow = hl + (l * l + m) * r;
                T* hb = hlbar + (l * l + m) * r;
                const T* f = st.feat.data() + M.feature_offset(l) + m * n;
                T* fb = st.featbar.data() + M.feature_offset(l) + m * n;
                for (int c = 0; c < n; ++c) st.work[c] = amul(Vbar, f[c]);
                for (int a = 0; a < r; ++a) {
                    const T ta = amul(Vbar, hrow[a]);
                    for (int c = 0; c < n; ++c) {
                        hb[a] += B[a * n + c] * st.work[c];
                        fb[c] += B[a * n + c] * ta;
                    }
                    if (gB)
                        for (int c = 0; c < n; ++c) gB[a * n + c] += pdot(Vbar, mul(hrow[a], f[c]));
                }
            }
        }
    }
    // P of core k starts after those of cores 2 … k−1
    std::size_t p_end = 0;
    for (int k = 2; k < d; ++k) p_end += core_products_size(M, k);
    for (int k = d - 1; k >= 2; --k) {
        const int rp_r = M.rank(k - 1), rk_r = M.rank(k);
        p_end -= core_products_size(M, k);
        const T* P0 = st.coupled.data() + p_end;
        const T* __restrict hp = st.h[k - 2].data();
        T* __restrict hpbar = st.hbar[k - 2].data();
        const T* __restrict hkbar = st.hbar[k - 1].data();
        T* __restrict Pbar = st.coupledbar.data();
        with_ranks(rp_r, rk_r, [&](auto RPc, auto RKc) {
            constexpr int RP = decltype(RPc)::value, RK = decltype(RKc)::value;
            const int rp = RP ? RP : rp_r, rk = RK ? RK : rk_r, rr = rp * rk;
            const T* P = P0;
            const auto& paths = M.paths();
            for (std::size_t p = 0; p < paths.size(); ++p) {
                const EtnPath& path = paths[p];
                const int n2 = M.channels_at(path.l2), nm = 2 * path.l2 + 1;
                std::fill(Pbar, Pbar + static_cast<std::size_t>(nm) * rr, T{});
                for (const GauntEntry& e : path.entries) {
                    const T* hrow = hp + static_cast<std::size_t>(path.l1 * path.l1 + e.m1) * rp;
                    T* hbrow = hpbar + static_cast<std::size_t>(path.l1 * path.l1 + e.m1) * rp;
                    const T* hb = hkbar + static_cast<std::size_t>(path.l3 * path.l3 + e.m3) * rk;
                    const T* Pm = P + static_cast<std::size_t>(e.m2) * rr;
                    T* Pbm = Pbar + static_cast<std::size_t>(e.m2) * rr;
                    for (int a = 0; a < rp; ++a) {
                        const T* Pa = Pm + static_cast<std::size_t>(a) * rk;
                        T* Pba = Pbm + static_cast<std::size_t>(a) * rk;
                        const T x = hrow[a];
                        T sum{};
                        for (int b = 0; b < rk; ++b) {
                            sum += amul(hb[b], Pa[b]);
                            Pba[b] += e.value * amul(hb[b], x);
                        }
                        hbrow[a] += e.value * sum;
                    }
                }
                const double* G = theta + M.path_offset(k, static_cast<int>(p));
                double* gG = grad ? grad + M.path_offset(k, static_cast<int>(p)) : nullptr;
                const T* f2 = st.feat.data() + M.feature_offset(path.l2);
                T* f2bar = st.featbar.data() + M.feature_offset(path.l2);
                for (int m2 = 0; m2 < nm; ++m2) {
                    const T* Pbm = Pbar + static_cast<std::size_t>(m2) * rr;
                    const T* f = f2 + static_cast<std::size_t>(m2) * n2;
                    T* fb = f2bar + static_cast<std::size_t>(m2) * n2;
                    for (int a = 0; a < rp; ++a) {
                        const T* Pba = Pbm + static_cast<std::size_t>(a) * rk;
                        for (int c = 0; c < n2; ++c) {
                            const double* g = G + static_cast<std::size_t>(a * n2 + c) * rk;
                            T sum{};
                            for (int b = 0; b < rk; ++b) sum += g[b] * Pba[b];
                            fb[c] += sum;
                            if (gG) {
                                double* gg = gG + static_cast<std::size_t>(a * n2 + c) * rk;
                                const T fc = f[c];
                                for (int b = 0; b < rk; ++b) gg[b] += pdot(Pba[b], fc);
                            }
                        }
                    }
                }
                P += static_cast<std::size_t>(nm) * rr;
            }
        });
    }
    {
        const int r1 = M.rank(1);
        const T* h1bar = st.hbar[0].data();
        for (int l = 0; l <= L; ++l) {
            const int n = M.channels_at(l);
            const double* A = theta + M.boundary_offset(l);
            double* gA = grad ? grad + M.boundary_offset(l) : nullptr;
            for (int m = 0; m <= 2 * l; ++m) {
                const T* f = st.feat.data() + M.feature_offset(l) + m * n;
                T* fb = st.featbar.data() + M.feature_offset(l) + m * n;
                const T* hb = h1bar + (l * l + m) * r1;
                for (int c = 0; c < n; ++c) {
                    const double* Ac = A + c * r1;
                    T sum{};
                    for (int a = 0; a < r1; ++a) sum += Ac[a] * hb[a];
                    fb[c] += sum;
                    if (gA)
                        for (int a = 0; a < r1; ++a) gA[c * r1 + a] += pdot(hb[a], f[c]);
                }
            }
        }
    }
}

template <class T>
void size_train(const EtnModel& M, TrainState<T>& st) {
    st.feat.assign(M.n_features(), T{});
    st.featbar.assign(M.n_features(), T{});
    st.h.resize(M.copies() - 1);
    st.hbar.resize(M.copies() - 1);
    for (int k = 1; k < M.copies(); ++k) {
        st.h[k - 1].assign(static_cast<std::size_t>(M.n_harmonics()) * M.rank(k), T{});
        st.hbar[k - 1].assign(static_cast<std::size_t>(M.n_harmonics()) * M.rank(k), T{});
    }
    std::size_t products = 1, widest_path = 1;
    for (int k = 2; k < M.copies(); ++k) {
        products += core_products_size(M, k);
        widest_path = std::max(widest_path, static_cast<std::size_t>(2 * M.max_l() + 1) * M.rank(k - 1) * M.rank(k));
    }
    st.coupled.assign(products, T{});
    st.coupledbar.assign(widest_path, T{});
    st.work.assign(M.channels_at(0), T{});
}
}  // namespace

EtnModel::EtnModel(EtnShape shape) : shape_(std::move(shape)) {
    const auto fail = [](const std::string& what) { throw std::invalid_argument("ETN shape: " + what); };
    const EtnShape& s = shape_;
    if (s.species_count < 1) fail("species_count must be >= 1, got " + std::to_string(s.species_count));
    if (s.radial_basis_size < 1) fail("radial_basis_size must be >= 1, got " + std::to_string(s.radial_basis_size));
    if (s.max_l < 0 || s.max_l > kMaxL)
        fail("max_l must be in 0…" + std::to_string(kMaxL) + ", got " + std::to_string(s.max_l));
    if (s.channels < 1) fail("channels must be >= 1, got " + std::to_string(s.channels));
    if (s.copies < 2) fail("copies (d) must be >= 2, got " + std::to_string(s.copies));
    if (static_cast<int>(s.ranks.size()) != s.copies - 1)
        fail("ranks must hold copies − 1 = " + std::to_string(s.copies - 1) + " values, got " +
             std::to_string(s.ranks.size()));
    for (std::size_t k = 0; k < s.ranks.size(); ++k)
        if (s.ranks[k] < 1) fail("rank r_" + std::to_string(k + 1) + " must be >= 1, got " + std::to_string(s.ranks[k]));
    if (!std::isfinite(s.min_dist) || !std::isfinite(s.max_dist) || s.min_dist < 0.0 || s.max_dist <= s.min_dist)
        fail("need 0 <= min_dist < max_dist, both finite, got min_dist = " + std::to_string(s.min_dist) +
             ", max_dist = " + std::to_string(s.max_dist));

    const int L = s.max_l;
    feature_offsets_.push_back(0);
    boundary_offsets_.push_back(0);
    for (int l = 0; l <= L; ++l) {
        feature_offsets_.push_back(feature_offsets_.back() + (2 * l + 1) * channels_at(l));
        boundary_offsets_.push_back(boundary_offsets_.back() + channels_at(l));
    }
    for (int l1 = 0; l1 <= L; ++l1)
        for (int l2 = 0; l2 <= L; ++l2)
            for (int l3 = std::abs(l1 - l2); l3 <= std::min(l1 + l2, L); l3 += 2) paths_.push_back({l1, l2, l3, {}});

    long offset = static_cast<long>(s.species_count) * s.species_count * (L + 1) * s.channels * s.radial_basis_size;
    species_offset_ = static_cast<int>(std::min<long>(offset, INT_MAX));
    offset += s.species_count;
    path_offsets_.resize(s.copies);
    core_offsets_.push_back(static_cast<int>(std::min<long>(offset, INT_MAX)));
    for (int k = 1; k <= s.copies; ++k) {
        if (k == 1) {
            offset += static_cast<long>(boundary_offsets_.back()) * s.ranks[0];
        } else if (k == s.copies) {
            offset += static_cast<long>(boundary_offsets_.back()) * s.ranks[k - 2];
        } else {
            long local = 0;
            for (const EtnPath& p : paths_) {
                path_offsets_[k - 1].push_back(static_cast<int>(std::min<long>(local, INT_MAX)));
                local += static_cast<long>(s.ranks[k - 2]) * channels_at(p.l2) * s.ranks[k - 1];
            }
            offset += local;
        }
        if (offset > INT_MAX) fail("the shape has more than 2^31 − 1 parameters");
        core_offsets_.push_back(static_cast<int>(offset));
    }

    // Y_lm = K_lm · d^m P_l/dz^m (z) · {cos mφ, sin mφ} sin^m θ, orthonormal on the sphere
    norms_.assign(n_harmonics(), 0.0);
    for (int l = 0; l <= L; ++l)
        for (int m = 0; m <= l; ++m) {
            double ratio = 1.0;  // (l − m)! / (l + m)!
            for (int q = l - m + 1; q <= l + m; ++q) ratio /= q;
            const double K = std::sqrt((m == 0 ? 1.0 : 2.0) * (2 * l + 1) / (4.0 * kPi) * ratio);
            norms_[l * l + l + m] = K;
            norms_[l * l + l - m] = K;
        }

    // Gaunt coefficients: the integrand is a polynomial of degree ≤ 3L on the sphere, its φ-frequencies ≤ 3L
    std::vector<double> nodes, weights;
    gauss_legendre(3 * L / 2 + 2, nodes, weights);
    const int n_phi = 3 * L + 2, nh = n_harmonics();
    std::vector<double> table, w;
    for (std::size_t t = 0; t < nodes.size(); ++t) {
        const double z = nodes[t], sin_t = std::sqrt(std::max(0.0, 1.0 - z * z));
        for (int q = 0; q < n_phi; ++q) {
            const double phi = 2.0 * kPi * q / n_phi;
            table.resize(table.size() + nh);
            real_harmonics(sin_t * std::cos(phi), sin_t * std::sin(phi), z, &table[table.size() - nh], nullptr);
            w.push_back(weights[t] * 2.0 * kPi / n_phi);
        }
    }
    for (EtnPath& p : paths_)
        for (int m3 = 0; m3 <= 2 * p.l3; ++m3)
            for (int m1 = 0; m1 <= 2 * p.l1; ++m1)
                for (int m2 = 0; m2 <= 2 * p.l2; ++m2) {
                    const int i1 = p.l1 * p.l1 + m1, i2 = p.l2 * p.l2 + m2, i3 = p.l3 * p.l3 + m3;
                    double sum = 0.0;
                    for (std::size_t q = 0; q < w.size(); ++q) {
                        const double* Y = &table[q * nh];
                        sum += w[q] * Y[i1] * Y[i2] * Y[i3];
                    }
                    if (std::abs(sum) > kGauntZero) p.entries.push_back({m1, m2, m3, sum});
                }
}

void EtnModel::real_harmonics(double x, double y, double z, double* Y, double* dY) const {
    const int L = shape_.max_l;
    constexpr int W = kMaxL + 2;
    // P[l][m] = d^m P_l / dz^m by the associated Legendre recurrences (without the (1 − z²)^{m/2} factor, which
    // C_m + i S_m = (x + i y)^m carries); P[l][l + 1] = 0
    double P[(kMaxL + 1) * W], C[kMaxL + 1], S[kMaxL + 1];
    double pmm = 1.0;
    for (int m = 0; m <= L; ++m) {
        if (m > 0) pmm *= 2 * m - 1;
        P[m * W + m] = pmm;
        P[m * W + m + 1] = 0.0;
        if (m + 1 <= L) P[(m + 1) * W + m] = (2 * m + 1) * z * pmm;
        for (int l = m + 2; l <= L; ++l)
            P[l * W + m] = ((2 * l - 1) * z * P[(l - 1) * W + m] - (l + m - 1) * P[(l - 2) * W + m]) / (l - m);
    }
    C[0] = 1.0;
    S[0] = 0.0;
    for (int m = 1; m <= L; ++m) {
        C[m] = x * C[m - 1] - y * S[m - 1];
        S[m] = x * S[m - 1] + y * C[m - 1];
    }
    for (int l = 0; l <= L; ++l) {
        const int base = l * l + l;
        const double* Pl = P + l * W;
        Y[base] = norms_[base] * Pl[0];
        if (dY) {
            dY[3 * base] = 0.0;
            dY[3 * base + 1] = 0.0;
            dY[3 * base + 2] = norms_[base] * Pl[1];
        }
        for (int m = 1; m <= l; ++m) {
            const double K = norms_[base + m], KP = K * Pl[m], KP1 = K * Pl[m + 1];
            Y[base + m] = KP * C[m];
            Y[base - m] = KP * S[m];
            if (dY) {
                double* dc = dY + 3 * (base + m);
                double* ds = dY + 3 * (base - m);
                dc[0] = KP * m * C[m - 1];
                dc[1] = -KP * m * S[m - 1];
                dc[2] = KP1 * C[m];
                ds[0] = KP * m * S[m - 1];
                ds[1] = KP * m * C[m - 1];
                ds[2] = KP1 * S[m];
            }
        }
    }
}

EtnKernel::EtnKernel(const EtnModel& model, const double* theta)
    : model_(model), theta_(theta), hv_(model.n_harmonics()), hg_(3 * model.n_harmonics()) {
    size_train(model, plain_);
    size_train(model, dual_);
}

void EtnKernel::ensure_stride(int n_active) {
    const int needed = std::max(kPad, (n_active + kPad - 1) / kPad * kPad);
    if (needed <= stride_) return;
    stride_ = needed;
    const std::size_t s = stride_;
    const int R = model_.radial_basis_size(), nh = model_.n_harmonics(),
              nq = (model_.max_l() + 1) * model_.channels();
    r_.assign(s, 0.0);
    u_.assign(3 * s, 0.0);
    for (auto* t : {&Q_, &dQ_}) t->assign(R * s, 0.0);
    for (auto* t : {&Y_, &ydot_}) t->assign(nh * s, 0.0);
    dY_.assign(3 * nh * s, 0.0);
    for (auto* t : {&rad_, &drad_, &x_, &z_}) t->assign(nq * s, 0.0);
    scratch_.assign(8 * s, 0.0);
    n_act_ = 0;  // the tables are gone
}

int EtnKernel::count_active(const Structure& s, int i) const {
    const double rc2 = model_.max_dist() * model_.max_dist();
    int n = 0;
    for (int p = s.offsets[i]; p < s.offsets[i + 1]; ++p) {
        const double* v = &s.vectors[3 * p];
        n += v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < rc2;
    }
    return n;
}

void EtnKernel::load_atom(const Structure& s, int i, const double* features) {
    const EtnModel& M = model_;
    const int begin = s.offsets[i];
    const double rc = M.max_dist(), rmin = M.min_dist();
    n_nb_ = s.offsets[i + 1] - begin;
    type_ = s.types[i];
    // a neighbour list built with a larger cutoff (a Verlet skin, another potential's set) is compacted to ours,
    // its neighbours grouped by species, so that the radial sums run over contiguous rows of one coefficient set
    const int S = M.species_count();
    active_.clear();
    species_begin_.assign(S + 1, 0);
    for (int t = 0; t < S; ++t) {
        species_begin_[t] = static_cast<int>(active_.size());
        for (int n = 0; n < n_nb_; ++n) {
            const double* v = &s.vectors[3 * (begin + n)];
            if (s.types[s.neighbors[begin + n]] == t && v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < rc * rc)
                active_.push_back(n);
        }
    }
    species_begin_[S] = static_cast<int>(active_.size());
    ensure_stride(static_cast<int>(active_.size()));
    n_act_ = static_cast<int>(active_.size());
    const int na = n_act_, R = M.radial_basis_size(), nh = M.n_harmonics(), L = M.max_l(), Nc = M.channels();
    double *r = row(r_, 0), *ux = row(u_, 0), *uy = row(u_, 1), *uz = row(u_, 2);
    for (int a = 0; a < na; ++a) {
        const double* v = &s.vectors[3 * (begin + active_[a])];
        r[a] = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        ux[a] = v[0] / r[a];
        uy[a] = v[1] / r[a];
        uz[a] = v[2] / r[a];
    }
    // Q_β = T_β(ξ)·(R_cut − r)² and its r-derivative (MTP_SPEC §2, scaling 1), by the Chebyshev recurrence
    {
        double *xi = row(scratch_, 0), *dd = row(scratch_, 1), *T0 = row(scratch_, 2), *T1 = row(scratch_, 3),
               *dT0 = row(scratch_, 4), *dT1 = row(scratch_, 5);
        const double dxi = 2.0 / (rc - rmin);
        double *Q0 = row(Q_, 0), *dQ0 = row(dQ_, 0);
        for (int a = 0; a < na; ++a) {
            xi[a] = (2.0 * r[a] - rmin - rc) / (rc - rmin);
            dd[a] = rc - r[a];
            T0[a] = 1.0;
            T1[a] = xi[a];
            dT0[a] = 0.0;
            dT1[a] = 1.0;
            Q0[a] = dd[a] * dd[a];
            dQ0[a] = -2.0 * dd[a];
        }
        if (R > 1) {
            double *Q1 = row(Q_, 1), *dQ1 = row(dQ_, 1);
            for (int a = 0; a < na; ++a) {
                Q1[a] = xi[a] * dd[a] * dd[a];
                dQ1[a] = dxi * dd[a] * dd[a] - 2.0 * xi[a] * dd[a];
            }
        }
        for (int b = 2; b < R; ++b) {
            double *Qb = row(Q_, b), *dQb = row(dQ_, b);
            for (int a = 0; a < na; ++a) {
                const double T2 = 2.0 * xi[a] * T1[a] - T0[a];
                const double dT2 = 2.0 * T1[a] + 2.0 * xi[a] * dT1[a] - dT0[a];
                Qb[a] = T2 * dd[a] * dd[a];
                dQb[a] = dT2 * dxi * dd[a] * dd[a] - 2.0 * T2 * dd[a];
                T0[a] = T1[a];
                T1[a] = T2;
                dT0[a] = dT1[a];
                dT1[a] = dT2;
            }
        }
    }
    // Y_lm and ∇_r Y_lm = (∇Y − (∇Y·u) u)/r
    for (int a = 0; a < na; ++a) {
        M.real_harmonics(ux[a], uy[a], uz[a], hv_.data(), hg_.data());
        const double inv_r = 1.0 / r[a];
        for (int q = 0; q < nh; ++q) {
            const double* g = &hg_[3 * q];
            const double gu = g[0] * ux[a] + g[1] * uy[a] + g[2] * uz[a];
            row(Y_, q)[a] = hv_[q];
            row(dY_, 3 * q)[a] = (g[0] - gu * ux[a]) * inv_r;
            row(dY_, 3 * q + 1)[a] = (g[1] - gu * uy[a]) * inv_r;
            row(dY_, 3 * q + 2)[a] = (g[2] - gu * uz[a]) * inv_r;
        }
    }
    // R_lc and R'_lc, one species of neighbours at a time
    const int nq = (L + 1) * Nc;
    for (int t = 0; t < S; ++t) {
        const int a0 = species_begin_[t], a1 = species_begin_[t + 1];
        if (a0 == a1) continue;
        const double* w0 = theta_ + M.radial_offset(type_, t);
        for (int q = 0; q < nq; ++q) {
            const double* w = w0 + q * R;
            double* __restrict f = row(rad_, q);
            double* __restrict df = row(drad_, q);
            const double* __restrict Q = Q_.data();
            const double* __restrict dQ = dQ_.data();
            const std::size_t st = stride_;
            // blocks of 8 neighbours (one AVX-512 vector), the sums over β in registers
            for (int a = a0; a < a1; a += 8) {
                const int n = std::min(8, a1 - a);
                double acc[8] = {0.0}, dacc[8] = {0.0};
                for (int b = 0; b < R; ++b) {
                    const double wb = w[b];
                    const double *Qb = Q + b * st + a, *dQb = dQ + b * st + a;
                    if (n == 8) {
#pragma omp simd
                        for (int j = 0; j < 8; ++j) {
                            acc[j] += wb * Qb[j];
                            dacc[j] += wb * dQb[j];
                        }
                    } else {
                        for (int j = 0; j < n; ++j) {
                            acc[j] += wb * Qb[j];
                            dacc[j] += wb * dQb[j];
                        }
                    }
                }
                for (int j = 0; j < n; ++j) {
                    f[a + j] = acc[j];
                    df[a + j] = dacc[j];
                }
            }
        }
    }
    std::vector<double>& F = plain_.feat;
    if (features) {
        std::copy(features, features + M.n_features(), F.begin());
        return;
    }
    for (int l = 0; l <= L; ++l) {
        const int n = M.channels_at(l);
        for (int c = 0; c < Nc; ++c) {
            const double* f = row(rad_, l * Nc + c);
            for (int m = 0; m <= 2 * l; ++m) {
                const double* Y = row(Y_, l * l + m);
                double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                for (int a = 0; a < na; ++a) sum += f[a] * Y[a];
                F[M.feature_offset(l) + m * n + c] = sum;
            }
        }
    }
    F[M.feature_offset(0) + Nc] = 1.0;
}

double EtnKernel::site_energy(double* g) {
    const EtnModel& M = model_;
    const double V = theta_[M.species_offset() + type_] + train_forward(M, theta_, plain_);
    if (!g) return V;
    train_reverse(M, theta_, plain_, 1.0, nullptr);
    const int na = n_act_, L = M.max_l(), Nc = M.channels();
    double *gr = row(scratch_, 0), *gx = row(scratch_, 1), *gy = row(scratch_, 2), *gz = row(scratch_, 3),
           *t1 = row(scratch_, 4), *t2 = row(scratch_, 5);
    std::fill(gr, gr + 4 * static_cast<std::size_t>(stride_), 0.0);
    const std::vector<double>& Fb = plain_.featbar;
    for (int l = 0; l <= L; ++l) {
        const int n = M.channels_at(l);
        for (int m = 0; m <= 2 * l; ++m) {
            const int q = l * l + m;
            const double* fb = Fb.data() + M.feature_offset(l) + m * n;
            std::fill(t1, t1 + na, 0.0);
            std::fill(t2, t2 + na, 0.0);
            for (int c = 0; c < Nc; ++c) {
                const double *f = row(rad_, l * Nc + c), *df = row(drad_, l * Nc + c), w = fb[c];
#pragma omp simd
                for (int a = 0; a < na; ++a) {
                    t1[a] += w * df[a];
                    t2[a] += w * f[a];
                }
            }
            const double *Y = row(Y_, q), *dx = row(dY_, 3 * q), *dy = row(dY_, 3 * q + 1), *dz = row(dY_, 3 * q + 2);
#pragma omp simd
            for (int a = 0; a < na; ++a) {
                gr[a] += Y[a] * t1[a];
                gx[a] += t2[a] * dx[a];
                gy[a] += t2[a] * dy[a];
                gz[a] += t2[a] * dz[a];
            }
        }
    }
    std::fill(g, g + 3 * n_nb_, 0.0);
    const double *ux = row(u_, 0), *uy = row(u_, 1), *uz = row(u_, 2);
    for (int a = 0; a < na; ++a) {
        double* gn = g + 3 * active_[a];
        gn[0] = gr[a] * ux[a] + gx[a];
        gn[1] = gr[a] * uy[a] + gy[a];
        gn[2] = gr[a] * uz[a] + gz[a];
    }
    return V;
}

void EtnKernel::site_vjp(double e, const double* W, double* grad) {
    const EtnModel& M = model_;
    const int na = n_act_, L = M.max_l(), Nc = M.channels(), R = M.radial_basis_size(), nh = M.n_harmonics();
    // s_j = u_j·W_j (the tangent of r_j) and Ẏ_lm(j) = ∇_r Y_lm(j)·W_j
    double *sj = row(scratch_, 0), *wx = row(scratch_, 1), *wy = row(scratch_, 2), *wz = row(scratch_, 3);
    const double *ux = row(u_, 0), *uy = row(u_, 1), *uz = row(u_, 2);
    for (int a = 0; a < na; ++a) {
        const double* w = W + 3 * active_[a];
        wx[a] = w[0];
        wy[a] = w[1];
        wz[a] = w[2];
        sj[a] = ux[a] * w[0] + uy[a] * w[1] + uz[a] * w[2];
    }
    for (int q = 0; q < nh; ++q) {
        const double *dx = row(dY_, 3 * q), *dy = row(dY_, 3 * q + 1), *dz = row(dY_, 3 * q + 2);
        double* yd = row(ydot_, q);
#pragma omp simd
        for (int a = 0; a < na; ++a) yd[a] = dx[a] * wx[a] + dy[a] * wy[a] + dz[a] * wz[a];
    }
    // the dual features (F̃, Ḟ), Ḟ = Σ_j R'_lc s_j Y_lm + R_lc Ẏ_lm
    std::vector<Dual>& F = dual_.feat;
    for (int l = 0; l <= L; ++l) {
        const int n = M.channels_at(l);
        for (int c = 0; c < Nc; ++c) {
            const int q = l * Nc + c;
            const double *f = row(rad_, q), *df = row(drad_, q);
            double* xs = row(x_, q);
#pragma omp simd
            for (int a = 0; a < na; ++a) xs[a] = df[a] * sj[a];
            for (int m = 0; m <= 2 * l; ++m) {
                const double *Y = row(Y_, l * l + m), *yd = row(ydot_, l * l + m);
                double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                for (int a = 0; a < na; ++a) sum += xs[a] * Y[a] + f[a] * yd[a];
                const int k = M.feature_offset(l) + m * n + c;
                F[k] = {plain_.feat[k], sum};
            }
        }
    }
    F[M.feature_offset(0) + Nc] = {1.0, 0.0};
    train_forward(M, theta_, dual_);
    train_reverse(M, theta_, dual_, Dual{e, 1.0}, grad);
    grad[M.species_offset() + type_] += e;
    // radial coefficients: ∂Φ/∂W[z_i, z_j, l, c, β] = Σ_j Q_β (Σ_m F̄ Y + Ḟbar Ẏ) + Q'_β s_j Σ_m Ḟbar Y
    const std::vector<Dual>& Fb = dual_.featbar;
    for (int l = 0; l <= L; ++l) {
        const int n = M.channels_at(l);
        for (int c = 0; c < Nc; ++c) {
            const int q = l * Nc + c;
            double *X = row(x_, q), *Z = row(z_, q);
            std::fill(X, X + na, 0.0);
            std::fill(Z, Z + na, 0.0);
            for (int m = 0; m <= 2 * l; ++m) {
                const Dual fb = Fb[M.feature_offset(l) + m * n + c];
                const double *Y = row(Y_, l * l + m), *yd = row(ydot_, l * l + m);
#pragma omp simd
                for (int a = 0; a < na; ++a) {
                    X[a] += fb.v * Y[a] + fb.d * yd[a];
                    Z[a] += fb.d * Y[a];
                }
            }
#pragma omp simd
            for (int a = 0; a < na; ++a) Z[a] *= sj[a];
        }
    }
    const int nq = (L + 1) * Nc;
    for (int t = 0; t < M.species_count(); ++t) {
        const int a0 = species_begin_[t], a1 = species_begin_[t + 1];
        if (a0 == a1) continue;
        double* gw = grad + M.radial_offset(type_, t);
        for (int q = 0; q < nq; ++q) {
            const double* __restrict X = row(x_, q);
            const double* __restrict Z = row(z_, q);
            for (int b = 0; b < R; ++b) {
                const double* __restrict Qb = row(Q_, b);
                const double* __restrict dQb = row(dQ_, b);
                double sum = 0.0;
#pragma omp simd reduction(+ : sum)
                for (int a = a0; a < a1; ++a) sum += Qb[a] * X[a] + dQb[a] * Z[a];
                gw[q * R + b] += sum;
            }
        }
    }
}

void evaluate_structure(EtnKernel& kernel, const Structure& s, double* site_energies, double* forces,
                        double* plus_stress, std::vector<double>* state) {
    const std::size_t nf = kernel.model().n_features();
    if (state) state->resize(nf * s.n_atoms);
    std::fill(forces, forces + 3 * s.n_atoms, 0.0);
    std::fill(plus_stress, plus_stress + 9, 0.0);
    std::vector<double> g;
    for (int i = 0; i < s.n_atoms; ++i) {
        kernel.load_atom(s, i);
        g.resize(3 * kernel.n_neighbors());
        site_energies[i] = kernel.site_energy(g.data());
        if (state) std::copy(kernel.features(), kernel.features() + nf, state->begin() + nf * i);
        scatter_pair_gradients(s, i, g.data(), forces, plus_stress);
    }
}

void evaluate_structure_parallel(const EtnModel& model, const double* theta, const Structure& s,
                                 double* site_energies, double* forces, double* plus_stress, double* atom_virials,
                                 int n_threads) {
    evaluate_pairs_parallel<EtnKernel>(
        model, theta, s, 1,
        [&](EtnKernel& kernel, int i, int, double* g) {
            kernel.load_atom(s, i);
            site_energies[i] = kernel.site_energy(g + 3 * static_cast<std::size_t>(s.offsets[i]));
        },
        forces, plus_stress, atom_virials, n_threads);
}

void structure_vjp(EtnKernel& kernel, const Structure& s, double e, const double* phi, const double* sigma,
                   double* grad, const std::vector<double>* state) {
    const std::size_t nf = kernel.model().n_features();
    std::vector<double> W;
    for (int i = 0; i < s.n_atoms; ++i) {
        // a zero cotangent contributes nothing: a force row of a large cell touches one neighbourhood
        if (!pair_cotangents(s, i, phi, sigma, W) && e == 0.0) continue;
        kernel.load_atom(s, i, state ? state->data() + nf * i : nullptr);
        kernel.site_vjp(e, W.data(), grad);
    }
}

void structure_jacobian(EtnKernel& kernel, const Structure& s, const std::vector<int>& rows, double* J,
                        const std::vector<double>& state) {
    const std::size_t nf = kernel.model().n_features(), np = kernel.n_params();
    const int n3 = 3 * s.n_atoms;
    std::vector<double> W;
    for (int i = 0; i < s.n_atoms; ++i) {
        const int begin = s.offsets[i], nn = s.offsets[i + 1] - begin;
        bool loaded = false;
        for (std::size_t t = 0; t < rows.size(); ++t) {
            // the unit cotangent's W_ij (see structure_vjp)
            const int q = rows[t];
            const double e = q == 0 ? 1.0 : 0.0;
            bool zero = e == 0.0;
            W.assign(3 * nn, 0.0);
            if (q >= 1 && q <= n3) {
                const int atom = (q - 1) / 3, a = (q - 1) % 3;
                for (int n = 0; n < nn; ++n) {
                    const double v = (i == atom ? 1.0 : 0.0) - (s.neighbors[begin + n] == atom ? 1.0 : 0.0);
                    W[3 * n + a] = v;
                    zero = zero && v == 0.0;
                }
            } else if (q > n3) {
                const int a = (q - 1 - n3) / 3, b = (q - 1 - n3) % 3;
                for (int n = 0; n < nn; ++n) {
                    W[3 * n + a] = -s.vectors[3 * (begin + n) + b];
                    zero = zero && W[3 * n + a] == 0.0;
                }
            }
            if (zero) continue;
            if (!loaded) kernel.load_atom(s, i, state.data() + nf * i);
            loaded = true;
            kernel.site_vjp(e, W.data(), J + t * np);
        }
    }
}

}  // namespace mtpfit

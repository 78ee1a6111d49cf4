#include "site_kernel.hpp"

#include <algorithm>
#include <cmath>

namespace mtpfit {

SiteKernel::SiteKernel(const Basis& basis, const double* theta)
    : basis_(basis), theta_(theta), K_(basis.radial_funcs_count), R_(basis.radial_basis_size),
      D_(basis.max_degree + 1), m_(basis.moments_count), adj_(basis.moments_count),
      tan_(basis.moments_count), tan_adj_(basis.moments_count), P_(basis.radial_funcs_count),
      Dmu_(basis.radial_funcs_count) {}

void SiteKernel::radial_basis(double r, double* Q, double* dQ) const {
    // Q_β = s·T_β(ξ)·(R_cut − r)², ξ = (2r − R_min − R_cut)/(R_cut − R_min)  (MTP_SPEC §2)
    const double rmin = basis_.min_dist, rc = basis_.max_dist, s = basis_.scaling;
    const double xi = (2.0 * r - rmin - rc) / (rc - rmin);
    const double dxi = 2.0 / (rc - rmin);
    const double d = rc - r, d2 = d * d;
    double T0 = 1.0, T1 = xi, dT0 = 0.0, dT1 = 1.0;
    Q[0] = s * d2;
    dQ[0] = -2.0 * s * d;
    Q[1] = s * T1 * d2;
    dQ[1] = s * (dT1 * dxi * d2 - 2.0 * T1 * d);
    for (int b = 2; b < R_; ++b) {
        const double T2 = 2.0 * xi * T1 - T0;
        const double dT2 = 2.0 * T1 + 2.0 * xi * dT1 - dT0;
        Q[b] = s * T2 * d2;
        dQ[b] = s * (dT2 * dxi * d2 - 2.0 * T2 * d);
        T0 = T1; T1 = T2; dT0 = dT1; dT1 = dT2;
    }
}

inline double SiteKernel::monomial(int n, const BasicMoment& b) const {
    const double* pw = &powers_[3 * D_ * n];
    return pw[b.p] * pw[D_ + b.q] * pw[2 * D_ + b.w];
}

inline void SiteKernel::monomial_gradient(int n, const BasicMoment& b, double* out) const {
    // gradient of ux^p uy^q uz^w with respect to the unit vector u
    const double* px = &powers_[3 * D_ * n];
    const double* py = px + D_;
    const double* pz = py + D_;
    out[0] = b.p ? b.p * px[b.p - 1] * py[b.q] * pz[b.w] : 0.0;
    out[1] = b.q ? b.q * px[b.p] * py[b.q - 1] * pz[b.w] : 0.0;
    out[2] = b.w ? b.w * px[b.p] * py[b.q] * pz[b.w - 1] : 0.0;
}

double SiteKernel::forward(const Structure& s, int i) {
    const int begin = s.offsets[i];
    n_nb_ = s.offsets[i + 1] - begin;
    type_ = s.types[i];
    if (static_cast<int>(r_.size()) < n_nb_) {
        r_.resize(n_nb_); u_.resize(3 * n_nb_); powers_.resize(3 * D_ * n_nb_);
        Q_.resize(R_ * n_nb_); dQ_.resize(R_ * n_nb_); f_.resize(K_ * n_nb_); df_.resize(K_ * n_nb_);
        nb_type_.resize(n_nb_); active_.resize(n_nb_);
    }
    std::fill(m_.begin(), m_.end(), 0.0);
    const int S = basis_.species_count;
    for (int n = 0; n < n_nb_; ++n) {
        const double* v = &s.vectors[3 * (begin + n)];
        const double r = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        // a training set may be built with a larger cutoff than this basis uses
        active_[n] = r < basis_.max_dist;
        if (!active_[n]) continue;
        r_[n] = r;
        double* u = &u_[3 * n];
        for (int a = 0; a < 3; ++a) u[a] = v[a] / r;
        double* pw = &powers_[3 * D_ * n];
        for (int a = 0; a < 3; ++a) {
            double* p = pw + a * D_;
            p[0] = 1.0;
            for (int k = 1; k < D_; ++k) p[k] = p[k - 1] * u[a];
        }
        const int tj = s.types[s.neighbors[begin + n]];
        nb_type_[n] = tj;
        double* Q = &Q_[R_ * n];
        double* dQ = &dQ_[R_ * n];
        radial_basis(r, Q, dQ);
        const double* c = theta_ + (type_ * S + tj) * K_ * R_;
        for (int mu = 0; mu < K_; ++mu) {
            double fv = 0.0, dfv = 0.0;
            for (int b = 0; b < R_; ++b) {
                fv += c[mu * R_ + b] * Q[b];
                dfv += c[mu * R_ + b] * dQ[b];
            }
            f_[K_ * n + mu] = fv;
            df_[K_ * n + mu] = dfv;
        }
        for (std::size_t k = 0; k < basis_.basic.size(); ++k) {
            const BasicMoment& bm = basis_.basic[k];
            m_[k] += f_[K_ * n + bm.mu] * monomial(n, bm);
        }
    }
    for (const auto& t : basis_.products) m_[t.target] += t.mult * m_[t.left] * m_[t.right];
    double V = theta_[basis_.species_offset() + type_];
    const double* c = theta_ + basis_.moment_offset();
    for (std::size_t a = 0; a < basis_.mapping.size(); ++a) V += c[a] * m_[basis_.mapping[a]];
    return V;
}

void SiteKernel::adjoint() {
    std::fill(adj_.begin(), adj_.end(), 0.0);
    const double* c = theta_ + basis_.moment_offset();
    for (std::size_t a = 0; a < basis_.mapping.size(); ++a) adj_[basis_.mapping[a]] += c[a];
    for (auto t = basis_.products.rbegin(); t != basis_.products.rend(); ++t) {
        const double w = t->mult * adj_[t->target];
        adj_[t->left] += w * m_[t->right];
        adj_[t->right] += w * m_[t->left];
    }
}

void SiteKernel::pair_gradients(double* g) const {
    // ∂M/∂r = (∇_u M − ν M u)/r for a monomial M of degree ν in u = r/|r|
    for (int n = 0; n < n_nb_; ++n) {
        double* gn = g + 3 * n;
        gn[0] = gn[1] = gn[2] = 0.0;
        if (!active_[n]) continue;
        double A = 0.0, C = 0.0, G[3] = {0.0, 0.0, 0.0}, grad[3];
        for (std::size_t k = 0; k < basis_.basic.size(); ++k) {
            const BasicMoment& bm = basis_.basic[k];
            const double a = adj_[k];
            const double M = monomial(n, bm);
            const double fa = a * f_[K_ * n + bm.mu];
            A += a * df_[K_ * n + bm.mu] * M;
            C += fa * (bm.p + bm.q + bm.w) * M;
            monomial_gradient(n, bm, grad);
            G[0] += fa * grad[0]; G[1] += fa * grad[1]; G[2] += fa * grad[2];
        }
        const double inv_r = 1.0 / r_[n];
        const double radial = A - C * inv_r;
        const double* u = &u_[3 * n];
        for (int a = 0; a < 3; ++a) gn[a] = radial * u[a] + G[a] * inv_r;
    }
}

void SiteKernel::add_vjp(double e, const double* W, double* grad) {
    const std::size_t n_basic = basis_.basic.size();
    // tangent of every basic moment along the neighbour displacements W
    std::fill(tan_.begin(), tan_.end(), 0.0);
    double mono_grad[3];
    for (int n = 0; n < n_nb_; ++n) {
        if (!active_[n]) continue;
        const double* w = W + 3 * n;
        const double* u = &u_[3 * n];
        const double wu = w[0] * u[0] + w[1] * u[1] + w[2] * u[2];
        const double inv_r = 1.0 / r_[n];
        for (std::size_t k = 0; k < n_basic; ++k) {
            const BasicMoment& bm = basis_.basic[k];
            const double M = monomial(n, bm);
            monomial_gradient(n, bm, mono_grad);
            const double wgrad = w[0] * mono_grad[0] + w[1] * mono_grad[1] + w[2] * mono_grad[2];
            tan_[k] += df_[K_ * n + bm.mu] * M * wu + f_[K_ * n + bm.mu] * (wgrad - (bm.p + bm.q + bm.w) * M * wu) * inv_r;
        }
    }
    for (const auto& t : basis_.products)
        tan_[t.target] += t.mult * (tan_[t.left] * m_[t.right] + m_[t.left] * tan_[t.right]);

    // species and moment coefficients enter Φ = e·V + Σ W·g linearly
    grad[basis_.species_offset() + type_] += e;
    double* gc = grad + basis_.moment_offset();
    const double* c = theta_ + basis_.moment_offset();
    std::fill(tan_adj_.begin(), tan_adj_.end(), 0.0);
    for (std::size_t a = 0; a < basis_.mapping.size(); ++a) {
        const int k = basis_.mapping[a];
        gc[a] += e * m_[k] + tan_[k];
        tan_adj_[k] += e * c[a];
    }
    // reverse pass through the products for the adjoint of the moments in Φ; adj_ (= dV/dm) is the
    // adjoint of the tangents
    for (auto t = basis_.products.rbegin(); t != basis_.products.rend(); ++t) {
        const double a = t->mult * tan_adj_[t->target];
        const double b = t->mult * adj_[t->target];
        tan_adj_[t->left] += a * m_[t->right] + b * tan_[t->right];
        tan_adj_[t->right] += a * m_[t->left] + b * tan_[t->left];
    }
    // radial coefficients: Φ depends on c^{ab}_{μβ} through f_μ (weight Q_β) and f'_μ (weight Q'_β)
    const int S = basis_.species_count;
    for (int n = 0; n < n_nb_; ++n) {
        if (!active_[n]) continue;
        const double* w = W + 3 * n;
        const double* u = &u_[3 * n];
        const double wu = w[0] * u[0] + w[1] * u[1] + w[2] * u[2];
        const double inv_r = 1.0 / r_[n];
        std::fill(P_.begin(), P_.end(), 0.0);
        std::fill(Dmu_.begin(), Dmu_.end(), 0.0);
        for (std::size_t k = 0; k < n_basic; ++k) {
            const BasicMoment& bm = basis_.basic[k];
            const double M = monomial(n, bm);
            monomial_gradient(n, bm, mono_grad);
            const double wgrad = w[0] * mono_grad[0] + w[1] * mono_grad[1] + w[2] * mono_grad[2];
            P_[bm.mu] += tan_adj_[k] * M + adj_[k] * (wgrad - (bm.p + bm.q + bm.w) * M * wu) * inv_r;
            Dmu_[bm.mu] += adj_[k] * M * wu;
        }
        double* gr = grad + (type_ * S + nb_type_[n]) * K_ * R_;
        const double* Q = &Q_[R_ * n];
        const double* dQ = &dQ_[R_ * n];
        for (int mu = 0; mu < K_; ++mu)
            for (int b = 0; b < R_; ++b) gr[mu * R_ + b] += P_[mu] * Q[b] + Dmu_[mu] * dQ[b];
    }
}

void evaluate_structure(const Basis& basis, const double* theta, const Structure& s, double* site_energies,
                        double* forces, double* plus_stress) {
    SiteKernel kernel(basis, theta);
    std::fill(forces, forces + 3 * s.n_atoms, 0.0);
    std::fill(plus_stress, plus_stress + 9, 0.0);
    std::vector<double> g;
    for (int i = 0; i < s.n_atoms; ++i) {
        site_energies[i] = kernel.forward(s, i);
        kernel.adjoint();
        g.resize(3 * kernel.n_neighbors());
        kernel.pair_gradients(g.data());
        const int begin = s.offsets[i];
        for (int n = 0; n < kernel.n_neighbors(); ++n) {
            const int j = s.neighbors[begin + n];
            const double* gn = &g[3 * n];
            const double* r = &s.vectors[3 * (begin + n)];
            for (int a = 0; a < 3; ++a) {
                forces[3 * i + a] += gn[a];
                forces[3 * j + a] -= gn[a];
                for (int b = 0; b < 3; ++b) plus_stress[3 * a + b] -= gn[a] * r[b];
            }
        }
    }
}

void structure_vjp(const Basis& basis, const double* theta, const Structure& s, double e, const double* phi,
                   const double* sigma, double* grad) {
    SiteKernel kernel(basis, theta);
    std::vector<double> W;
    for (int i = 0; i < s.n_atoms; ++i) {
        kernel.forward(s, i);
        kernel.adjoint();
        const int begin = s.offsets[i];
        const int nn = kernel.n_neighbors();
        W.assign(3 * nn, 0.0);
        // W_ij = ∂L/∂g_ij: F_i += g_ij, F_j −= g_ij, S −= g_ij ⊗ r_ij
        for (int n = 0; n < nn; ++n) {
            double* w = &W[3 * n];
            if (phi) {
                const int j = s.neighbors[begin + n];
                for (int a = 0; a < 3; ++a) w[a] = phi[3 * i + a] - phi[3 * j + a];
            }
            if (sigma) {
                const double* r = &s.vectors[3 * (begin + n)];
                for (int a = 0; a < 3; ++a)
                    w[a] -= sigma[3 * a] * r[0] + sigma[3 * a + 1] * r[1] + sigma[3 * a + 2] * r[2];
            }
        }
        kernel.add_vjp(e, W.data(), grad);
    }
}

}  // namespace mtpfit

// Site energy V_i of one atom, its derivatives with respect to the neighbour vectors, and the
// vector–Jacobian products with respect to θ (MTP_SPEC §4, §5, §7).
//
// Layout: every per-neighbour quantity is a row over the neighbours ([quantity][neighbour]), so the innermost
// loops run over contiguous neighbours and vectorise. The basic moments are grouped by their unit-vector
// monomial u_x^p u_y^q u_z^w: each monomial row (and its gradient rows) is built once from the power table
// and used at once by every basic moment of its group, so the working set stays in the L1 cache.
#pragma once

#include <array>
#include <vector>

#include "basis.hpp"
#include "structure.hpp"

namespace mtpfit {

class SiteKernel {
public:
    SiteKernel(const Basis& basis, const double* theta);

    // Forward pass for atom i: neighbour geometry, radial functions, every moment. Returns V_i (eV).
    double forward(const Structure& s, int i);
    // The neighbour part of forward() alone; with restore() it resumes an atom whose moments and adjoints
    // were saved (save()) by an earlier forward() and adjoint().
    void geometry(const Structure& s, int i);
    void save(double* moments, double* adjoints) const;
    void restore(const double* moments, const double* adjoints);
    int moments_count() const { return static_cast<int>(m_.size()); }
    // Reverse pass: dV_i/dm for every moment (needs forward()).
    void adjoint();
    // g_ij = dV_i/dr_ij for each neighbour of the last forward() atom; 3 values per neighbour, eV/Å.
    void pair_gradients(double* g);
    // Adds d/dθ [ e·V_i + Σ_j W_ij · g_ij ] to grad (length n_params); W has 3 values per neighbour.
    // Needs forward() and adjoint(). This is the per-site vector–Jacobian product of MTP_SPEC §7.
    void add_vjp(double e, const double* W, double* grad);

    int n_neighbors() const { return n_nb_; }

private:
    double* row(std::vector<double>& table, int r) { return table.data() + static_cast<std::size_t>(r) * stride_; }
    const double* row(const std::vector<double>& table, int r) const {
        return table.data() + static_cast<std::size_t>(r) * stride_;
    }
    void reserve(int n);
    // Row of monomial d over the active neighbours, and the rows of its u-gradient.
    void monomial_row(int d, double* M) const;
    void monomial_gradient_rows(int d, double* gx, double* gy, double* gz) const;

    const Basis& basis_;
    const double* theta_;
    int K_, R_, D_;
    // distinct monomials of the basis; the basic moments using monomial d are
    // group_moment_[group_begin_[d] .. group_begin_[d+1]) with radial functions group_mu_[…]
    std::vector<std::array<int, 3>> monomials_;
    std::vector<int> degree_;
    std::vector<int> group_begin_, group_moment_, group_mu_;

    int type_ = 0;
    int n_nb_ = 0;      // neighbours in the list
    int n_act_ = 0;     // neighbours inside the cutoff, compacted to the front of every table
    int stride_ = 0;
    std::vector<int> active_, nb_type_;
    std::vector<double> r_, inv_r_, ux_, uy_, uz_, powers_, Q_, dQ_, f_, df_, t1_, t2_, P_, Dmu_, acc_;
    std::vector<double> m_, adj_, tan_, tan_adj_;
};

// Site energies (N), forces (N×3, eV/Å) and PlusStress (3×3 row-major, eV) of one configuration. With `state`,
// every atom's moments and adjoints are kept there (N × 2 × moments_count) for a following structure_vjp().
void evaluate_structure(const Basis& basis, const double* theta, const Structure& s, double* site_energies,
                        double* forces, double* plus_stress, std::vector<double>* state = nullptr);

// Adds to grad the vector–Jacobian product  e·dE/dθ + Σ_i φ_i·dF_i/dθ + Σ_ab σ_ab dS_ab/dθ.
// phi (N×3) and sigma (3×3) may be null (zero cotangent). `state` from evaluate_structure() at the same θ
// spares recomputing the moments.
void structure_vjp(const Basis& basis, const double* theta, const Structure& s, double e, const double* phi,
                   const double* sigma, double* grad, const std::vector<double>* state = nullptr);

}  // namespace mtpfit

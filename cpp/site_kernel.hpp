// Site energy V_i of one atom, its derivatives with respect to the neighbour vectors, and the
// vector–Jacobian products with respect to θ (MTP_SPEC §4, §5, §7).
#pragma once

#include <vector>

#include "basis.hpp"
#include "structure.hpp"

namespace mtpfit {

class SiteKernel {
public:
    SiteKernel(const Basis& basis, const double* theta);

    // Forward pass for atom i: neighbour geometry, radial functions, every moment. Returns V_i (eV).
    double forward(const Structure& s, int i);
    // Reverse pass: moment_adjoint() = dV_i/dm (needs forward()).
    void adjoint();
    // g_ij = dV_i/dr_ij for each neighbour of the last forward() atom; 3 values per neighbour, eV/Å.
    void pair_gradients(double* g) const;
    // Adds d/dθ [ e·V_i + Σ_j W_ij · g_ij ] to grad (length n_params); W has 3 values per neighbour.
    // Needs forward() and adjoint(). This is the per-site vector–Jacobian product of MTP_SPEC §7.
    void add_vjp(double e, const double* W, double* grad);

    int n_neighbors() const { return n_nb_; }

private:
    void radial_basis(double r, double* Q, double* dQ) const;
    double monomial(int n, const BasicMoment& b) const;
    void monomial_gradient(int n, const BasicMoment& b, double* out) const;

    const Basis& basis_;
    const double* theta_;
    int K_, R_, D_;
    int type_ = 0;
    int n_nb_ = 0;
    // per-neighbour scratch, sized to the largest neighbourhood seen
    std::vector<double> r_, u_, powers_, Q_, dQ_, f_, df_;
    std::vector<int> nb_type_;
    std::vector<char> active_;
    // per-moment values, adjoints and tangents
    std::vector<double> m_, adj_, tan_, tan_adj_, P_, Dmu_;
};

// Site energies (N), forces (N×3, eV/Å) and PlusStress (3×3 row-major, eV) of one configuration.
void evaluate_structure(const Basis& basis, const double* theta, const Structure& s, double* site_energies,
                        double* forces, double* plus_stress);

// Adds to grad the vector–Jacobian product  e·dE/dθ + Σ_i φ_i·dF_i/dθ + Σ_ab σ_ab dS_ab/dθ.
// phi (N×3) and sigma (3×3) may be null (zero cotangent).
void structure_vjp(const Basis& basis, const double* theta, const Structure& s, double e, const double* phi,
                   const double* sigma, double* grad);

}  // namespace mtpfit

// The MTP basis: radial basis settings and the moment-tensor contraction graph of an .mtp file.
#pragma once

#include <array>
#include <vector>

namespace mtpfit {

// One basic moment m = sum_j f_mu(r_ij) (x/r)^p (y/r)^q (z/r)^w  (MTP_SPEC §4).
struct BasicMoment {
    int mu, p, q, w;
};

// m[target] += mult * m[left] * m[right], applied in file order (MTP_SPEC §4).
struct MomentProduct {
    int left, right, mult, target;
};

struct Basis {
    int species_count;
    int radial_funcs_count;   // K
    int radial_basis_size;    // R
    double min_dist;          // Å
    double max_dist;          // Å, the cutoff
    double scaling;           // product of the top-level and basis-level `scaling`
    int moments_count;
    std::vector<BasicMoment> basic;
    std::vector<MomentProduct> products;
    std::vector<int> mapping;  // moment index of each scalar basis function

    int max_degree = 0;        // largest p+q+w over basic moments

    Basis(int species_count, int radial_funcs_count, int radial_basis_size, double min_dist,
          double max_dist, double scaling, int moments_count, std::vector<BasicMoment> basic,
          std::vector<MomentProduct> products, std::vector<int> mapping);

    // θ layout (MTP_SPEC §6): [radial (a,b,mu,beta) | species | moment].
    int n_radial() const { return species_count * species_count * radial_funcs_count * radial_basis_size; }
    int species_offset() const { return n_radial(); }
    int moment_offset() const { return n_radial() + species_count; }
    int n_params() const { return moment_offset() + static_cast<int>(mapping.size()); }
    int radial_offset(int a, int b) const {
        return (a * species_count + b) * radial_funcs_count * radial_basis_size;
    }
};

}  // namespace mtpfit

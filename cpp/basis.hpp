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

// Consecutive products [begin, end) with one target: summed in a register, stored once.
struct ProductRun {
    int target, begin, end;
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

    // Derived contraction graph for the kernels. Forward passes walk `runs`; reverse passes visit the moments
    // in `reverse_order` (every moment after all moments it helps to make) and gather from their uses
    // u in [use_offsets[x], use_offsets[x+1]): x contributes use_mult[u] · m[use_other[u]] to m[use_target[u]].
    // Gathering avoids read-modify-write chains through memory; the arrays are separate so the gathers vectorise.
    std::vector<ProductRun> runs;
    std::vector<int> reverse_order;
    std::vector<int> use_offsets, use_target, use_other;
    std::vector<double> use_mult;
    // The moments' sparse dependence on the basic moments, for forward-mode Jacobians (SiteKernel::basis_chain()):
    // moment x depends on the basic moments chain_basic[chain_offsets[x] … chain_offsets[x+1]) (ascending; a basic
    // moment on itself alone). Product t adds its left factor's derivatives at positions
    // chain_positions[chain_product_offsets[t] …] of its target's list, then its right factor's.
    std::vector<int> chain_offsets, chain_basic, chain_product_offsets, chain_positions;
    // Σ over the basis functions of the basic moments each depends on: the FMAs per tangent column
    double basis_chain_size() const {
        double size = 0.0;
        for (int x : mapping) size += chain_offsets[x + 1] - chain_offsets[x];
        return size;
    }

    Basis(int species_count, int radial_funcs_count, int radial_basis_size, double min_dist,
          double max_dist, double scaling, int moments_count, std::vector<BasicMoment> basic,
          std::vector<MomentProduct> products, std::vector<int> mapping);

    void build_graph();

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

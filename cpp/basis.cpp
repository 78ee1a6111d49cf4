#include "basis.hpp"

#include <stdexcept>
#include <string>

namespace mtpfit {

namespace {
void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("invalid MTP basis: " + message);
}
}  // namespace

Basis::Basis(int species_count_, int radial_funcs_count_, int radial_basis_size_, double min_dist_,
             double max_dist_, double scaling_, int moments_count_, std::vector<BasicMoment> basic_,
             std::vector<MomentProduct> products_, std::vector<int> mapping_)
    : species_count(species_count_), radial_funcs_count(radial_funcs_count_),
      radial_basis_size(radial_basis_size_), min_dist(min_dist_), max_dist(max_dist_),
      scaling(scaling_), moments_count(moments_count_), basic(std::move(basic_)),
      products(std::move(products_)), mapping(std::move(mapping_)) {
    require(species_count > 0, "species_count must be positive");
    require(radial_funcs_count > 0, "radial_funcs_count must be positive");
    require(radial_basis_size >= 2, "radial_basis_size must be at least 2");
    require(max_dist > min_dist && min_dist >= 0.0, "need 0 <= min_dist < max_dist");
    require(static_cast<int>(basic.size()) <= moments_count, "more basic moments than moments");
    const int n_basic = static_cast<int>(basic.size());
    for (const auto& b : basic) {
        require(b.mu >= 0 && b.mu < radial_funcs_count, "basic moment uses a radial function index out of range");
        require(b.p >= 0 && b.q >= 0 && b.w >= 0, "negative exponent in alpha_index_basic");
        max_degree = std::max(max_degree, b.p + b.q + b.w);
    }
    for (std::size_t k = 0; k < products.size(); ++k) {
        const auto& t = products[k];
        require(t.target >= n_basic && t.target < moments_count,
                "alpha_index_times entry " + std::to_string(k) + " targets a basic or out-of-range moment");
        require(t.left >= 0 && t.left < moments_count && t.right >= 0 && t.right < moments_count,
                "alpha_index_times entry " + std::to_string(k) + " reads a moment out of range");
    }
    for (int m : mapping) require(m >= 0 && m < moments_count, "alpha_moment_mapping index out of range");
}

}  // namespace mtpfit

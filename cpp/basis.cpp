#include "basis.hpp"

#include <algorithm>
#include <iterator>
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
    build_graph();
}

void Basis::build_graph() {
    const int n_products = static_cast<int>(products.size());
    for (int k = 0; k < n_products;) {
        int end = k + 1;
        while (end < n_products && products[end].target == products[k].target) ++end;
        runs.push_back({products[k].target, k, end});
        k = end;
    }
    // A product may only read complete moments: every product that defines them comes earlier.
    std::vector<int> last_definition(moments_count, -1);
    for (int k = 0; k < n_products; ++k) last_definition[products[k].target] = k;
    for (int k = 0; k < n_products; ++k)
        require(last_definition[products[k].left] < k && last_definition[products[k].right] < k,
                "alpha_index_times entry " + std::to_string(k) + " reads a moment that a later entry changes");
    reverse_order.resize(moments_count);
    for (int x = 0; x < moments_count; ++x) reverse_order[x] = x;
    std::stable_sort(reverse_order.begin(), reverse_order.end(),
                     [&](int a, int b) { return last_definition[a] > last_definition[b]; });
    std::vector<std::vector<MomentProduct>> by_moment(moments_count);  // (target, other, mult) per factor
    for (const auto& t : products) {
        by_moment[t.left].push_back({t.target, t.right, t.mult, 0});
        by_moment[t.right].push_back({t.target, t.left, t.mult, 0});
    }
    use_offsets.assign(moments_count + 1, 0);
    for (int x = 0; x < moments_count; ++x) {
        use_offsets[x + 1] = use_offsets[x] + static_cast<int>(by_moment[x].size());
        for (const auto& u : by_moment[x]) {
            use_target.push_back(u.left);
            use_other.push_back(u.right);
            use_mult.push_back(u.mult);
        }
    }
    // dependence sets: products only read complete moments (checked above), so one pass in file order suffices
    const int n_basic = static_cast<int>(basic.size());
    std::vector<std::vector<int>> depends(moments_count);
    for (int x = 0; x < n_basic; ++x) depends[x] = {x};
    for (const auto& t : products) {
        std::vector<int>& d = depends[t.target];
        std::vector<int> merged;
        std::set_union(depends[t.left].begin(), depends[t.left].end(), depends[t.right].begin(),
                       depends[t.right].end(), std::back_inserter(merged));
        std::vector<int> all;
        std::set_union(d.begin(), d.end(), merged.begin(), merged.end(), std::back_inserter(all));
        d.swap(all);
    }
    chain_offsets.assign(moments_count + 1, 0);
    for (int x = 0; x < moments_count; ++x) {
        chain_offsets[x + 1] = chain_offsets[x] + static_cast<int>(depends[x].size());
        chain_basic.insert(chain_basic.end(), depends[x].begin(), depends[x].end());
    }
    chain_product_offsets.assign(n_products + 1, 0);
    for (int k = 0; k < n_products; ++k) {
        const auto& t = products[k];
        const std::vector<int>& d = depends[t.target];
        for (int factor : {t.left, t.right})
            for (int b : depends[factor])
                chain_positions.push_back(
                    static_cast<int>(std::lower_bound(d.begin(), d.end(), b) - d.begin()));
        chain_product_offsets[k + 1] = static_cast<int>(chain_positions.size());
    }
}

}  // namespace mtpfit

#include "training_set.hpp"

#include <algorithm>
#include <stdexcept>

#include "site_kernel.hpp"

namespace mtpfit {

namespace {
// Configurations are summed in fixed blocks, and the blocks in order, so the floating-point sum does not
// depend on which thread took which block.
constexpr int kMaxBlocks = 256;

int block_count(int n) { return std::min(n, kMaxBlocks); }
int block_begin(int b, int n, int blocks) { return static_cast<int>(static_cast<long>(b) * n / blocks); }
}  // namespace

void TrainingSet::add(Structure structure, Labels labels) {
    const std::size_t n3 = 3 * static_cast<std::size_t>(structure.n_atoms);
    if (labels.forces.size() != n3 || labels.force_weights.size() != n3)
        throw std::invalid_argument("forces and force weights need 3 values per atom");
    atom_offsets_.push_back(atom_offsets_.back() + structure.n_atoms);
    structures_.push_back(std::move(structure));
    labels_.push_back(std::move(labels));
}

double TrainingSet::loss_and_gradient(const Basis& basis, const double* theta, double* grad, double* per_config,
                                      int n_threads, const std::vector<int>* subset) const {
    if (subset)
        for (int k : *subset)
            if (k < 0 || k >= size()) throw std::out_of_range("configuration index out of range");
    const int n = subset ? static_cast<int>(subset->size()) : size();
    const int np = basis.n_params();
    const int blocks = block_count(n);
    std::vector<double> block_grad(static_cast<std::size_t>(blocks) * np, 0.0);
    std::vector<double> losses(std::max(n, 0), 0.0);
#pragma omp parallel num_threads(n_threads)
    {
        SiteKernel kernel(basis, theta);
        std::vector<double> site, forces, phi, state;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < blocks; ++b) {
            double* g = &block_grad[static_cast<std::size_t>(b) * np];
            for (int q = block_begin(b, n, blocks); q < block_begin(b + 1, n, blocks); ++q) {
                const int k = subset ? (*subset)[q] : q;
                const Structure& s = structures_[k];
                const Labels& y = labels_[k];
                site.resize(s.n_atoms);
                forces.resize(3 * s.n_atoms);
                phi.resize(3 * s.n_atoms);
                std::array<double, 9> stress, sigma;
                evaluate_structure(kernel, s, site.data(), forces.data(), stress.data(), &state);
                double energy = 0.0;
                for (double v : site) energy += v;
                const double dE = energy - y.energy;
                double loss = y.energy_weight * dE * dE;
                for (std::size_t c = 0; c < forces.size(); ++c) {
                    const double d = forces[c] - y.forces[c];
                    loss += y.force_weights[c] * d * d;
                    phi[c] = 2.0 * y.force_weights[c] * d;
                }
                for (int c = 0; c < 9; ++c) {
                    const double d = stress[c] - y.stress[c];
                    loss += y.stress_weights[c] * d * d;
                    sigma[c] = 2.0 * y.stress_weights[c] * d;
                }
                losses[q] = loss;
                structure_vjp(kernel, s, 2.0 * y.energy_weight * dE, phi.data(), sigma.data(), g, &state);
            }
        }
    }
    std::fill(grad, grad + np, 0.0);
    for (int b = 0; b < blocks; ++b) {
        const double* g = &block_grad[static_cast<std::size_t>(b) * np];
        for (int p = 0; p < np; ++p) grad[p] += g[p];
    }
    double total = 0.0;
    for (int k = 0; k < n; ++k) total += losses[k];
    if (per_config) std::copy(losses.begin(), losses.end(), per_config);
    return total;
}

void TrainingSet::predict(const Basis& basis, const double* theta, double* energies, double* forces,
                          double* stresses, int n_threads) const {
    const int n = size();
#pragma omp parallel num_threads(n_threads)
    {
        SiteKernel kernel(basis, theta);
        std::vector<double> site;
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < n; ++k) {
            const Structure& s = structures_[k];
            site.resize(s.n_atoms);
            evaluate_structure(kernel, s, site.data(), forces + 3 * atom_offsets_[k], stresses + 9 * k);
            double energy = 0.0;
            for (double v : site) energy += v;
            energies[k] = energy;
        }
    }
}

void TrainingSet::energy_gradients(const Basis& basis, const double* theta, double* out, int n_threads) const {
    const int n = size();
    const int np = basis.n_params();
    std::fill(out, out + static_cast<std::size_t>(n) * np, 0.0);
#pragma omp parallel num_threads(n_threads)
    {
        SiteKernel kernel(basis, theta);
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < n; ++k)
            structure_vjp(kernel, structures_[k], 1.0, nullptr, nullptr, out + static_cast<std::size_t>(k) * np);
    }
}

}  // namespace mtpfit

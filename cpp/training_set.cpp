#include "training_set.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "etn.hpp"
#include "site_kernel.hpp"

namespace mtpfit {

namespace {
// Configurations are summed in fixed blocks, and the blocks in order, so the floating-point sum does not
// depend on which thread took which block.
constexpr int kMaxBlocks = 256;

int block_count(int n) { return std::min(n, kMaxBlocks); }
int block_begin(int b, int n, int blocks) { return static_cast<int>(static_cast<long>(b) * n / blocks); }

// Gauss–Newton accumulators are n_params² each, so fewer fixed blocks than for the gradient.
constexpr int kMaxMatrixBlocks = 16;

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Residuals r = prediction − label and weights w of one configuration (energy, 3N forces, 9 PlusStress), with
// the forward state kept in `state` (if not null) for reverse passes.
template <class Kernel>
void config_residuals(Kernel& kernel, const Structure& s, const Labels& y, std::vector<double>* state,
                      double* r, double* w) {
    const int n3 = 3 * s.n_atoms;
    std::vector<double> site(s.n_atoms);
    evaluate_structure(kernel, s, site.data(), r + 1, r + 1 + n3, state);
    double energy = 0.0;
    for (double v : site) energy += v;
    r[0] = energy - y.energy;
    w[0] = y.energy_weight;
    for (int c = 0; c < n3; ++c) {
        r[1 + c] -= y.forces[c];
        w[1 + c] = y.force_weights[c];
    }
    for (int c = 0; c < 9; ++c) {
        r[1 + n3 + c] -= y.stress[c];
        w[1 + n3 + c] = y.stress_weights[c];
    }
}

// A sign ±1 from (seed, configuration id, sketch row, residual): splitmix64, so a sketch does not depend on threads.
double sketch_sign(std::uint64_t seed, std::uint64_t k, std::uint64_t t, std::uint64_t q) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (1 + k + 0x100000000ULL * (t + 1)) + 0xBF58476D1CE4E5B9ULL * q;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (z & 1) ? 1.0 : -1.0;
}

// Residuals, weights and (for the rows where `want(w)` holds) Jacobian rows of one configuration; returns the
// number of rows written to J, in residual order. One forward pass, then one reverse pass per row (the
// vector–Jacobian product with a unit cotangent), reusing the forward state.
template <class Kernel, class Want>
int config_jacobian(Kernel& kernel, const Structure& s, const Labels& y, int np, std::vector<double>& state,
                    double* r, double* w, RowMatrix& J, std::vector<int>& rows, Want want) {
    const int m = 10 + 3 * s.n_atoms;
    config_residuals(kernel, s, y, &state, r, w);
    rows.clear();
    for (int q = 0; q < m; ++q)
        if (want(w[q])) rows.push_back(q);
    J.setZero(static_cast<Eigen::Index>(rows.size()), np);
    structure_jacobian(kernel, s, rows, J.data(), state);
    return static_cast<int>(rows.size());
}
}  // namespace

void TrainingSet::add(Structure structure, Labels labels) {
    const std::size_t n3 = 3 * static_cast<std::size_t>(structure.n_atoms);
    if (labels.forces.size() != n3 || labels.force_weights.size() != n3)
        throw std::invalid_argument("forces and force weights need 3 values per atom");
    if (labels.id < 0) labels.id = static_cast<long>(labels_.size());
    atom_offsets_.push_back(atom_offsets_.back() + structure.n_atoms);
    structures_.push_back(std::move(structure));
    labels_.push_back(std::move(labels));
}

template <class Model>
double TrainingSet::loss_and_gradient(const Model& model, const double* theta, double* grad, double* per_config,
                                      int n_threads, const std::vector<int>* subset) const {
    if (subset)
        for (int k : *subset)
            if (k < 0 || k >= size()) throw std::out_of_range("configuration index out of range");
    const int n = subset ? static_cast<int>(subset->size()) : size();
    const int np = model.n_params();
    const int blocks = block_count(n);
    std::vector<double> block_grad(static_cast<std::size_t>(blocks) * np, 0.0);
    std::vector<double> losses(std::max(n, 0), 0.0);
#pragma omp parallel num_threads(n_threads)
    {
        typename KernelOf<Model>::type kernel(model, theta);
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

template <class Model>
void TrainingSet::predict(const Model& model, const double* theta, double* energies, double* forces,
                          double* stresses, int n_threads) const {
    const int n = size();
#pragma omp parallel num_threads(n_threads)
    {
        typename KernelOf<Model>::type kernel(model, theta);
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

template <class Model>
void TrainingSet::energy_gradients(const Model& model, const double* theta, double* out, int n_threads) const {
    const int n = size();
    const int np = model.n_params();
    std::fill(out, out + static_cast<std::size_t>(n) * np, 0.0);
#pragma omp parallel num_threads(n_threads)
    {
        typename KernelOf<Model>::type kernel(model, theta);
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < n; ++k)
            structure_vjp(kernel, structures_[k], 1.0, nullptr, nullptr, out + static_cast<std::size_t>(k) * np);
    }
}

template <class Model>
void TrainingSet::residual_jacobian(const Model& model, const double* theta, int k, double* r, double* w,
                                    double* J) const {
    if (k < 0 || k >= size()) throw std::out_of_range("configuration index out of range");
    const int np = model.n_params();
    typename KernelOf<Model>::type kernel(model, theta);
    std::vector<double> state;
    std::vector<int> rows;
    RowMatrix rowsJ;
    config_jacobian(kernel, structures_[k], labels_[k], np, state, r, w, rowsJ, rows, [](double) { return true; });
    std::copy(rowsJ.data(), rowsJ.data() + rowsJ.size(), J);
}

template <class Model>
double TrainingSet::gauss_newton(const Model& model, const double* theta, double* JtWJ, double* JtWr,
                                 int n_threads, int sketch, std::uint64_t seed) const {
    const int n = size(), np = model.n_params();
    const int blocks = std::min(n, kMaxMatrixBlocks);
    std::vector<Eigen::MatrixXd> block_H(blocks);
    std::vector<Eigen::VectorXd> block_g(blocks);
    std::vector<double> block_loss(blocks, 0.0);
#pragma omp parallel num_threads(n_threads)
    {
        typename KernelOf<Model>::type kernel(model, theta);
        std::vector<double> state, r, w;
        std::vector<int> rows;
        RowMatrix J;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < blocks; ++b) {
            Eigen::MatrixXd H = Eigen::MatrixXd::Zero(np, np);
            Eigen::VectorXd g = Eigen::VectorXd::Zero(np);
            double loss = 0.0;
            for (int k = block_begin(b, n, blocks); k < block_begin(b + 1, n, blocks); ++k) {
                r.resize(n_residuals(k));
                w.resize(n_residuals(k));
                if (sketch > 0) {
                    // JᵀWJ ≈ Σ_t (Jᵀ W^½ ξ_t)(Jᵀ W^½ ξ_t)ᵀ with Rademacher ξ_t / √sketch: unbiased, `sketch`
                    // reverse passes instead of one per residual; JᵀWr stays exact
                    const Structure& s = structures_[k];
                    const int nr = n_residuals(k), n3 = 3 * s.n_atoms;
                    config_residuals(kernel, s, labels_[k], &state, r.data(), w.data());
                    std::vector<double> c(nr);
                    for (int q = 0; q < nr; ++q) {
                        c[q] = w[q] * r[q];
                        loss += w[q] * r[q] * r[q];
                    }
                    structure_vjp(kernel, s, c[0], c.data() + 1, c.data() + 1 + n3, g.data(), &state);
                    J.setZero(sketch, np);
                    const double scale = 1.0 / std::sqrt(static_cast<double>(sketch));
                    for (int t = 0; t < sketch; ++t) {
                        for (int q = 0; q < nr; ++q) c[q] = scale * std::sqrt(w[q]) * sketch_sign(seed, labels_[k].id, t, q);
                        structure_vjp(kernel, s, c[0], c.data() + 1, c.data() + 1 + n3, J.row(t).data(), &state);
                    }
                    H.selfadjointView<Eigen::Lower>().rankUpdate(J.transpose());
                    continue;
                }
                const int m = config_jacobian(kernel, structures_[k], labels_[k], np, state, r.data(), w.data(), J,
                                              rows, [](double weight) { return weight != 0.0; });
                Eigen::VectorXd root(m), rw(m);
                for (int t = 0; t < m; ++t) {
                    root[t] = std::sqrt(w[rows[t]]);
                    rw[t] = root[t] * r[rows[t]];
                    loss += w[rows[t]] * r[rows[t]] * r[rows[t]];
                }
                const RowMatrix Jw = root.asDiagonal() * J;
                H.selfadjointView<Eigen::Lower>().rankUpdate(Jw.transpose());
                g.noalias() += Jw.transpose() * rw;
            }
            block_H[b] = std::move(H);
            block_g[b] = std::move(g);
            block_loss[b] = loss;
        }
    }
    Eigen::MatrixXd H = Eigen::MatrixXd::Zero(np, np);
    Eigen::VectorXd g = Eigen::VectorXd::Zero(np);
    double loss = 0.0;
    for (int b = 0; b < blocks; ++b) {
        H += block_H[b];
        g += block_g[b];
        loss += block_loss[b];
    }
    H.triangularView<Eigen::StrictlyUpper>() = H.transpose();
    Eigen::Map<RowMatrix>(JtWJ, np, np) = H;
    Eigen::Map<Eigen::VectorXd>(JtWr, np) = g;
    return loss;
}

template <class Model>
void TrainingSet::residuals(const Model& model, const double* theta, double* r, double* w, int n_threads) const {
    const int n = size();
#pragma omp parallel num_threads(n_threads)
    {
        typename KernelOf<Model>::type kernel(model, theta);
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < n; ++k)
            config_residuals(kernel, structures_[k], labels_[k], nullptr, r + residual_offset(k),
                             w + residual_offset(k));
    }
}

template <class Model>
void TrainingSet::residual_vjp(const Model& model, const double* theta, const double* c, double* grad,
                               int n_threads) const {
    const int n = size(), np = model.n_params();
    const int blocks = block_count(n);
    std::vector<double> block_grad(static_cast<std::size_t>(blocks) * np, 0.0);
#pragma omp parallel num_threads(n_threads)
    {
        typename KernelOf<Model>::type kernel(model, theta);
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < blocks; ++b)
            for (int k = block_begin(b, n, blocks); k < block_begin(b + 1, n, blocks); ++k) {
                const double* ck = c + residual_offset(k);
                structure_vjp(kernel, structures_[k], ck[0], ck + 1, ck + 1 + 3 * structures_[k].n_atoms,
                              &block_grad[static_cast<std::size_t>(b) * np]);
            }
    }
    std::fill(grad, grad + np, 0.0);
    for (int b = 0; b < blocks; ++b)
        for (int p = 0; p < np; ++p) grad[p] += block_grad[static_cast<std::size_t>(b) * np + p];
}

// The MTP and the ETN
#define MTPFIT_TRAINING_SET_MODEL(Model)                                                                          \
    template double TrainingSet::loss_and_gradient(const Model&, const double*, double*, double*, int,           \
                                                   const std::vector<int>*) const;                               \
    template void TrainingSet::predict(const Model&, const double*, double*, double*, double*, int) const;       \
    template void TrainingSet::energy_gradients(const Model&, const double*, double*, int) const;                \
    template void TrainingSet::residual_jacobian(const Model&, const double*, int, double*, double*, double*)    \
        const;                                                                                                    \
    template void TrainingSet::residuals(const Model&, const double*, double*, double*, int) const;              \
    template void TrainingSet::residual_vjp(const Model&, const double*, const double*, double*, int) const;     \
    template double TrainingSet::gauss_newton(const Model&, const double*, double*, double*, int, int,           \
                                              std::uint64_t) const;
MTPFIT_TRAINING_SET_MODEL(Basis)
MTPFIT_TRAINING_SET_MODEL(EtnModel)
#undef MTPFIT_TRAINING_SET_MODEL

}  // namespace mtpfit

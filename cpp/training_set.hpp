// The training-set representation: neighbour geometry, labels and per-residual weights, built once and
// reused by every loss evaluation while θ changes.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "basis.hpp"
#include "etn.hpp"
#include "site_kernel.hpp"
#include "structure.hpp"

namespace mtpfit {

struct Labels {
    double energy = 0.0;                 // eV
    std::vector<double> forces;          // N×3, eV/Å
    std::array<double, 9> stress{};      // PlusStress 3×3, eV
    double energy_weight = 0.0;
    std::vector<double> force_weights;   // N×3; zero where a force is not labelled
    std::array<double, 9> stress_weights{};
    long id = -1;  // the configuration's index in the whole dataset (a shard holds part of it); -1: its position
};

// The per-thread kernel of a model: what every TrainingSet method below evaluates configurations with.
template <class Model>
struct KernelOf;
template <>
struct KernelOf<Basis> {
    using type = SiteKernel;
};
template <>
struct KernelOf<EtnModel> {
    using type = EtnKernel;
};

// The methods templated on Model take either potential, the MTP (Basis) or the ETN (EtnModel), with its θ; they
// are instantiated for both in training_set.cpp.
class TrainingSet {
public:
    void add(Structure structure, Labels labels);

    int size() const { return static_cast<int>(structures_.size()); }
    long n_atoms() const { return atom_offsets_.back(); }
    long atom_offset(int k) const { return atom_offsets_[k]; }
    const Structure& structure(int k) const { return structures_[k]; }

    // L = Σ_k [ wE_k ΔE_k² + Σ wF ΔF² + Σ wS ΔS² ] and ∂L/∂θ (adjoint method), over every configuration or,
    // with `subset`, over those listed (a mini-batch). grad has n_params entries; per_config (optional, one
    // value per configuration summed over) receives each term. Bit-identical for any thread count.
    template <class Model>
    double loss_and_gradient(const Model& model, const double* theta, double* grad, double* per_config,
                             int n_threads, const std::vector<int>* subset = nullptr) const;
    // Energies (size()), forces (n_atoms()×3) and PlusStress (size()×9) for every configuration.
    template <class Model>
    void predict(const Model& model, const double* theta, double* energies, double* forces, double* stresses,
                 int n_threads) const;
    // dE_k/dθ, size()×n_params row-major.
    template <class Model>
    void energy_gradients(const Model& model, const double* theta, double* out, int n_threads) const;

    // Residuals of configuration k: energy, forces (atom-major, 3N), PlusStress (9), in this order.
    int n_residuals(int k) const { return 10 + 3 * structures_[k].n_atoms; }
    // Configuration k's residuals r = prediction − label (n_residuals(k)), their weights w and the Jacobian
    // J = dr/dθ (n_residuals(k)×n_params row-major; rows of zero weight are computed too).
    template <class Model>
    void residual_jacobian(const Model& model, const double* theta, int k, double* r, double* w, double* J) const;
    // Offset of configuration k's residuals in the residual vector of the whole set (10 k + 3 × atoms before k).
    long residual_offset(int k) const { return 10L * k + 3 * atom_offsets_[k]; }
    long n_residuals_total() const { return residual_offset(size()); }
    // Every residual and weight of the set (n_residuals_total()), one energy+forces pass.
    template <class Model>
    void residuals(const Model& model, const double* theta, double* r, double* w, int n_threads) const;
    // grad = Jᵀc for a cotangent c over every residual (n_residuals_total()), one reverse pass.
    template <class Model>
    void residual_vjp(const Model& model, const double* theta, const double* c, double* grad, int n_threads) const;
    // Gauss–Newton quantities of the loss L = Σ w r² without storing J: JᵀWJ (n_params², row-major, both
    // triangles) and JᵀWr (n_params) summed over every configuration; returns L. Rows of zero weight are
    // skipped. Bit-identical for any thread count (fixed blocks, summed in order). With sketch > 0, JᵀWJ is the
    // unbiased random sketch Σ_t (JᵀW^½ξ_t)(JᵀW^½ξ_t)ᵀ, ξ_t Rademacher/√sketch drawn from `seed`, per
    // configuration: `sketch` reverse passes instead of one per residual (JᵀWr and the loss stay exact).
    template <class Model>
    double gauss_newton(const Model& model, const double* theta, double* JtWJ, double* JtWr, int n_threads,
                        int sketch = 0, std::uint64_t seed = 0) const;

    // The weighted linear least-squares system of the species and moment coefficients at the radial coefficients
    // of θ: the R factor (n × n row-major, n = S + M + 1, upper triangular) of W^½ [A | y], A the design of every
    // weighted residual (linear_system.hpp) and y the labels. min ‖W^½(A x − y)‖ = min ‖R₁₁ x − R₁ₙ‖ and the
    // residual norm at the minimum is |R_nn|. Rows of zero weight are left out. One pass; bit-identical for any
    // thread count (fixed blocks of configurations, their factors combined in a fixed tree). `directions` as in
    // structure_linear_design().
    void linear_system(const Basis& basis, const double* theta, double* R, int n_threads,
                       TangentDirections directions = TangentDirections::automatic) const;

private:
    std::vector<Structure> structures_;
    std::vector<Labels> labels_;
    std::vector<long> atom_offsets_{0};
};

}  // namespace mtpfit

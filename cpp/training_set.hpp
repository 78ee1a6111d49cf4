// The training-set representation: neighbour geometry, labels and per-residual weights, built once and
// reused by every loss evaluation while θ changes.
#pragma once

#include <array>
#include <vector>

#include "basis.hpp"
#include "structure.hpp"

namespace mtpfit {

struct Labels {
    double energy = 0.0;                 // eV
    std::vector<double> forces;          // N×3, eV/Å
    std::array<double, 9> stress{};      // PlusStress 3×3, eV
    double energy_weight = 0.0;
    std::vector<double> force_weights;   // N×3; zero where a force is not labelled
    std::array<double, 9> stress_weights{};
};

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
    double loss_and_gradient(const Basis& basis, const double* theta, double* grad, double* per_config,
                             int n_threads, const std::vector<int>* subset = nullptr) const;
    // Energies (size()), forces (n_atoms()×3) and PlusStress (size()×9) for every configuration.
    void predict(const Basis& basis, const double* theta, double* energies, double* forces, double* stresses,
                 int n_threads) const;
    // dE_k/dθ, size()×n_params row-major.
    void energy_gradients(const Basis& basis, const double* theta, double* out, int n_threads) const;

private:
    std::vector<Structure> structures_;
    std::vector<Labels> labels_;
    std::vector<long> atom_offsets_{0};
};

}  // namespace mtpfit

// A configuration's fixed neighbour geometry: what every evaluation at a new θ reuses.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

namespace mtpfit {

struct Structure {
    int n_atoms = 0;
    std::vector<int> types;         // potential type index per atom
    std::vector<int> offsets;       // n_atoms + 1; neighbours of atom i are [offsets[i], offsets[i+1])
    std::vector<int> neighbors;     // atom (not image) index of each neighbour
    std::vector<double> vectors;    // r_ij = r_j + shift - r_i, 3 per neighbour, Å
    // Optional (set_shifts()): the integer cell shift S_ij of each neighbour, 3 per neighbour, so that
    // r_ij = x_j − x_i + S_ij · cell; what set_positions() needs to follow moving atoms.
    std::vector<int> shifts;
    // Optional (index_incoming()): the pairs in which each atom is the neighbour, [incoming_offsets[j],
    // incoming_offsets[j+1]) of `incoming` holding the pair indices p with neighbors[p] == j in increasing order.
    std::vector<int> incoming_offsets, incoming;

    Structure(std::vector<int> types, std::vector<int> offsets, std::vector<int> neighbors,
              std::vector<double> vectors, int species_count);

    int n_pairs() const { return static_cast<int>(neighbors.size()); }

    // Stores the cell shifts (3 per neighbour). Throws std::invalid_argument on a wrong length.
    void set_shifts(std::vector<int> shifts);
    bool has_shifts() const { return !neighbors.empty() && shifts.size() == 3 * neighbors.size(); }

    // Recomputes every neighbour vector r_ij = x_j − x_i + S_ij · cell from positions (n_atoms × 3, Å) and the
    // cell (3 × 3, lattice vectors as rows, Å; rows along non-periodic directions multiply zero shifts), keeping
    // the pairs. Returns the shortest |r_ij| (infinity without pairs) and its pair index in *closest (−1 without
    // pairs), on n_threads OpenMP threads. Throws std::logic_error without shifts, std::invalid_argument on a
    // non-finite vector.
    double set_positions(const double* positions, const double* cell, int* closest = nullptr, int n_threads = 1);

    // Builds `incoming` (once; later calls return at once). Not thread-safe: call before sharing the structure.
    // The pairs closer than `cutoff` (a Verlet list's pairs inside the potential's cutoff), without shifts: the
    // kernels skip farther pairs anyway, but every stored pair costs in their per-pair passes.
    // `out`'s buffers are reused (a Verlet list compacts every MD step); its incoming-pair index is dropped.
    void within(double cutoff, Structure& out, int n_threads = 1) const;

    void index_incoming();
    bool has_incoming() const { return static_cast<int>(incoming_offsets.size()) == n_atoms + 1; }
};

// The `incoming` index of s (see Structure::incoming) into offsets (n_atoms + 1) and pairs (n_pairs), without
// storing it in s.
void incoming_pairs(const Structure& s, std::vector<int>& offsets, std::vector<int>& pairs);

// Atom i's force F_i = Σ_j g_ij − Σ_k g_ki (eV/Å, 3 values) and virial W_i = −½ Σ_j g_ij ⊗ r_ij − ½ Σ_k g_ki ⊗ r_ki
// (eV, 3 × 3 row-major) from the pair gradients g (3 per pair of s), summed in a fixed order (outgoing pairs, then
// the incoming ones of in_offsets/in_pairs, as incoming_pairs() gives them), so that a structure's forces do not
// depend on which thread gathered which atom.
void gather_pair_gradients(const Structure& s, const double* g, const int* in_offsets, const int* in_pairs, int i,
                           double* force, double* virial);

// The parallel evaluation every model shares: on n_threads OpenMP threads, each with its own Kernel(model, theta)
// reserved for the widest neighbourhood, `pass(kernel, first, count, g)` evaluates atoms first … first+count−1
// (count ≤ batch) — their site energies, and their pair gradients g_ij = dV_i/dr_ij into g (3 per pair of s) — in
// any schedule; then each atom gathers its force and virial (gather_pair_gradients(), atom_virials N × 3 × 3 or null)
// and plus_stress (3 × 3) is their sum in atom order. Bit-identical for any thread count.
template <class Kernel, class Model, class Pass>
void evaluate_pairs_parallel(const Model& model, const double* theta, const Structure& s, int batch, Pass pass,
                             double* forces, double* plus_stress, double* atom_virials, int n_threads) {
    const int n = s.n_atoms, n_batches = (n + batch - 1) / batch;
    std::vector<int> own_offsets, own_incoming;
    if (!s.has_incoming()) incoming_pairs(s, own_offsets, own_incoming);
    const int* in_offsets = s.has_incoming() ? s.incoming_offsets.data() : own_offsets.data();
    const int* in_pairs = s.has_incoming() ? s.incoming.data() : own_incoming.data();
    // left uninitialised: every value is written below (a serial zero fill would cost ~1 ms per 10⁵ pairs)
    std::unique_ptr<double[]> g(new double[3 * static_cast<std::size_t>(s.n_pairs())]);
    std::unique_ptr<double[]> own_virials(atom_virials ? nullptr : new double[9 * static_cast<std::size_t>(n)]);
    double* W = atom_virials ? atom_virials : own_virials.get();
    int widest = 0;
#pragma omp parallel num_threads(std::max(n_threads, 1))
    {
        Kernel kernel(model, theta);
#pragma omp for schedule(static) reduction(max : widest)
        for (int i = 0; i < n; ++i) widest = std::max(widest, kernel.count_active(s, i));
        kernel.reserve(widest);
        // an atom's site energy and pair gradients do not depend on the thread that computes them: the schedule
        // may balance the load (surfaces, a core busy elsewhere) without changing any result
#pragma omp for schedule(dynamic, 4)
        for (int b = 0; b < n_batches; ++b) pass(kernel, b * batch, std::min(batch, n - b * batch), g.get());
#pragma omp for schedule(static)
        for (int i = 0; i < n; ++i)
            gather_pair_gradients(s, g.get(), in_offsets, in_pairs, i, forces + 3 * static_cast<std::size_t>(i),
                                  W + 9 * static_cast<std::size_t>(i));
    }
    std::fill(plus_stress, plus_stress + 9, 0.0);
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < 9; ++c) plus_stress[c] += W[9 * static_cast<std::size_t>(i) + c];
}

// The cotangents W_ij = ∂Φ/∂g_ij (3 per neighbour of atom i, into W) of Φ = Σ_i φ_i·F_i + Σ_ab σ_ab S_ab through
// F_i += g_ij, F_j −= g_ij and S −= g_ij ⊗ r_ij: W_ij = φ_i − φ_j − σ r_ij. phi (N × 3) and sigma (3 × 3) may be
// null (zero). Returns whether any W_ij is non-zero.
bool pair_cotangents(const Structure& s, int i, const double* phi, const double* sigma, std::vector<double>& W);

// The serial counterpart for atom i's pairs: with g_ij = dV_i/dr_ij (3 per neighbour of i, g), F_i += g_ij,
// F_j −= g_ij (forces: n_atoms × 3) and S −= g_ij ⊗ r_ij (plus_stress: 3 × 3 row-major), in neighbour order.
void scatter_pair_gradients(const Structure& s, int i, const double* g, double* forces, double* plus_stress);

}  // namespace mtpfit

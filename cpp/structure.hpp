// A configuration's fixed neighbour geometry: what every evaluation at a new θ reuses.
#pragma once

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

// The serial counterpart for atom i's pairs: with g_ij = dV_i/dr_ij (3 per neighbour of i, g), F_i += g_ij,
// F_j −= g_ij (forces: n_atoms × 3) and S −= g_ij ⊗ r_ij (plus_stress: 3 × 3 row-major), in neighbour order.
void scatter_pair_gradients(const Structure& s, int i, const double* g, double* forces, double* plus_stress);

}  // namespace mtpfit

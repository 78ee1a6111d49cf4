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

    Structure(std::vector<int> types, std::vector<int> offsets, std::vector<int> neighbors,
              std::vector<double> vectors, int species_count);

    int n_pairs() const { return static_cast<int>(neighbors.size()); }
};

}  // namespace mtpfit

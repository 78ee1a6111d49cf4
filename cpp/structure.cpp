#include "structure.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace mtpfit {

Structure::Structure(std::vector<int> types_, std::vector<int> offsets_, std::vector<int> neighbors_,
                     std::vector<double> vectors_, int species_count)
    : n_atoms(static_cast<int>(types_.size())), types(std::move(types_)), offsets(std::move(offsets_)),
      neighbors(std::move(neighbors_)), vectors(std::move(vectors_)) {
    if (static_cast<int>(offsets.size()) != n_atoms + 1 || offsets.front() != 0 ||
        offsets.back() != static_cast<int>(neighbors.size()))
        throw std::invalid_argument("neighbour offsets do not match the number of atoms and pairs");
    if (vectors.size() != 3 * neighbors.size())
        throw std::invalid_argument("need 3 coordinates per neighbour vector");
    for (int i = 0; i < n_atoms; ++i) {
        if (offsets[i + 1] < offsets[i]) throw std::invalid_argument("neighbour offsets must not decrease");
        if (types[i] < 0 || types[i] >= species_count)
            throw std::invalid_argument("atom " + std::to_string(i) + " has type " + std::to_string(types[i]) +
                                        " outside 0.." + std::to_string(species_count - 1));
    }
    for (int j : neighbors)
        if (j < 0 || j >= n_atoms) throw std::invalid_argument("neighbour index out of range");
    for (double v : vectors)
        if (!std::isfinite(v)) throw std::invalid_argument("non-finite neighbour vector");
}

}  // namespace mtpfit

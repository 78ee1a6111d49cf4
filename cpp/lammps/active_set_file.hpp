// The text file of a neighbourhood-mode active set (python/mtpfit/active/grade.py, ActiveSet.write_lammps) read
// for the LAMMPS pair style's extrapolation grade: the columns of the rows b_i = [species one-hot | B_α(i)] it is
// built on and the inverse A⁻¹ of its members' rows, plus what identifies the potential it belongs to.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mtpfit {

struct ActiveSetFile {
    int n_params = 0;         // len(θ) of the potential
    int species_count = 0;    // S
    int basis_functions = 0;  // M = len(alpha_moment_mapping)
    std::uint64_t theta_fnv1a64 = 0;
    std::vector<int> columns;     // n columns of the S + M wide row, 0-based
    std::vector<double> inverse;  // A⁻¹, n × n row-major
};

// Parses the text of an active-set file; `name` (the file's path) prefixes every error message.
// Throws std::runtime_error "<name>:<line>: <what>" for a malformed file or one of another mode.
ActiveSetFile parse_active_set(const std::string& text, const std::string& name);

// FNV-1a (64 bit) of the IEEE-754 little-endian bytes of θ: mtpfit.active.grade.theta_checksum.
std::uint64_t theta_fnv1a64(const std::vector<double>& theta);

}  // namespace mtpfit

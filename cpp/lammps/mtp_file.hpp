// A trained .mtp file (MTP_SPEC §9) read into the core's Basis and θ, for callers without Python (the LAMMPS
// plugin). Mirrors python/mtpfit/potential/mtp_file.py: same fields, the same θ layout (MTP_SPEC §6).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "basis.hpp"

namespace mtpfit {

struct MtpFile {
    std::unique_ptr<Basis> basis;   // owned here: SiteKernel keeps a reference to it
    std::vector<double> theta;      // [radial (a, b, mu, beta) | species | moment], basis->n_params() values
    std::vector<std::string> elements;  // element of each type 0 … S−1 from `potential_tag = elements:…`, or empty
};

// Parses the text of a trained .mtp file; `name` (the file's path) prefixes every error message.
// Throws std::runtime_error "<name>:<line>: <what>" for a malformed or untrained file (no coefficients).
MtpFile parse_mtp(const std::string& text, const std::string& name);

// The '\n'-separated lines of a file's text (line k + 1 of the file is element k), for the plugin's readers.
std::vector<std::string> text_lines(const std::string& text);

}  // namespace mtpfit

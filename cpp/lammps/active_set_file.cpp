#include "active_set_file.hpp"

#include "mtp_file.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

namespace mtpfit {

namespace {

const char* const kFormat = "mtpfit-active-set-lammps-1";

std::vector<std::string> words(const std::string& line) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (true) {
        pos = line.find_first_not_of(" \t\r", pos);
        if (pos == std::string::npos) break;
        const std::size_t end = line.find_first_of(" \t\r", pos);
        out.push_back(line.substr(pos, end - pos));
        pos = end;
    }
    return out;
}

class Reader {
public:
    Reader(const std::string& text, const std::string& name) : name_(name) {
        for (const std::string& line : text_lines(text))
            lines_.push_back(words(line.substr(0, line.find('#'))));  // '#' starts a comment
    }

    ActiveSetFile read() {
        std::size_t k = next(0);
        const auto& first = k < lines_.size() ? lines_[k] : std::vector<std::string>{};
        if (first.size() != 2 || first[0] != "format" || first[1] != kFormat)
            fail("not an mtpfit active set for LAMMPS (its first line must be 'format " + std::string(kFormat) +
                 "'; write one with mtpfit lammps --extrapolation POT.mtp or ActiveSet.write_lammps)",
                 static_cast<int>(k) + 1);
        std::map<std::string, int> seen;  // key → line
        ActiveSetFile out;
        int size = -1;
        for (k = next(k + 1); k < lines_.size(); k = next(k + 1)) {
            const auto& w = lines_[k];
            const int line = static_cast<int>(k) + 1;
            if (w[0] == "inverse") {
                if (w.size() != 1) fail("'inverse' stands alone on its line; the matrix follows", line);
                break;
            }
            if (seen.count(w[0]))
                fail("'" + w[0] + "' given twice (first on line " + std::to_string(seen[w[0]]) + ")", line);
            seen[w[0]] = line;
            if (w[0] == "columns") {
                for (std::size_t c = 1; c < w.size(); ++c)
                    out.columns.push_back(integer(w[c], line, "columns", 0, 2147483647L));
                continue;
            }
            if (w.size() != 2) fail("expected '" + w[0].substr(0, 40) + " VALUE'", line);
            if (w[0] == "mode") {
                if (w[1] != "neighbourhood")
                    fail("a " + w[1].substr(0, 40) + "-mode active set: the pair style grades atoms' neighbourhoods "
                         "and needs a neighbourhood-mode one", line);
            } else if (w[0] == "n_params") {
                out.n_params = integer(w[1], line, w[0], 1, 2147483647L);
            } else if (w[0] == "species_count") {
                out.species_count = integer(w[1], line, w[0], 1, 2147483647L);
            } else if (w[0] == "basis_functions") {
                out.basis_functions = integer(w[1], line, w[0], 1, 2147483647L);
            } else if (w[0] == "size") {
                size = integer(w[1], line, w[0], 1, 2147483647L);
            } else if (w[0] == "theta_fnv1a64") {
                const std::string& h = w[1];
                const auto res = std::from_chars(h.data(), h.data() + h.size(), out.theta_fnv1a64, 16);
                if (h.size() != 16 || res.ec != std::errc() || res.ptr != h.data() + h.size())
                    fail("theta_fnv1a64: '" + h.substr(0, 40) + "' is not 16 hex digits", line);
            } else {
                fail("unknown field '" + w[0].substr(0, 40) + "'", line);
            }
        }
        if (k >= lines_.size()) fail("no 'inverse' line: the file ends before the matrix");
        for (const char* key : {"mode", "n_params", "species_count", "basis_functions", "theta_fnv1a64", "size",
                                "columns"})
            if (!seen.count(key)) fail(std::string("missing field '") + key + "'");
        const int width = out.species_count + out.basis_functions;
        if (static_cast<int>(out.columns.size()) != size)
            fail(std::to_string(out.columns.size()) + " columns for size " + std::to_string(size), seen["columns"]);
        for (std::size_t c = 0; c < out.columns.size(); ++c) {
            if (out.columns[c] >= width)
                fail("column " + std::to_string(out.columns[c]) + " beyond the " + std::to_string(width) +
                     " columns of species_count + basis_functions", seen["columns"]);
            if (c > 0 && out.columns[c] <= out.columns[c - 1])
                fail("columns must increase", seen["columns"]);
        }
        // the text already holds every number, so its length bounds what a corrupt `size` can make us allocate
        int rows = 0;
        for (k = next(k + 1); k < lines_.size(); k = next(k + 1), ++rows) {
            const int line = static_cast<int>(k) + 1;
            if (rows == size) fail("more than size = " + std::to_string(size) + " rows of the inverse", line);
            if (static_cast<int>(lines_[k].size()) != size)
                fail("row " + std::to_string(rows) + " of the inverse has " + std::to_string(lines_[k].size()) +
                     " numbers, expected size = " + std::to_string(size), line);
            for (const auto& t : lines_[k]) out.inverse.push_back(real(t, line));
        }
        if (rows != size)
            fail("the inverse has " + std::to_string(rows) + " rows, expected size = " + std::to_string(size));
        return out;
    }

private:
    [[noreturn]] void fail(const std::string& what, int line = 0) const {
        throw std::runtime_error(name_ + (line > 0 ? ":" + std::to_string(line) : "") + ": " + what);
    }

    // the first non-blank line at or after k
    std::size_t next(std::size_t k) const {
        while (k < lines_.size() && lines_[k].empty()) ++k;
        return k;
    }

    double real(const std::string& t, int line) const {
        double value = 0.0;
        const char* begin = t.data() + (t[0] == '+');
        const auto res = std::from_chars(begin, t.data() + t.size(), value);
        if (res.ec != std::errc() || res.ptr != t.data() + t.size() || !std::isfinite(value))
            fail("inverse: '" + t.substr(0, 40) + "' is not a finite number", line);
        return value;
    }

    int integer(const std::string& t, int line, const std::string& what, long low, long high) const {
        long value = 0;
        const auto res = std::from_chars(t.data(), t.data() + t.size(), value);
        if (res.ec != std::errc() || res.ptr != t.data() + t.size() || value < low || value > high)
            fail(what + ": '" + t.substr(0, 40) + "' is not an integer in " + std::to_string(low) + "…" +
                 std::to_string(high), line);
        return static_cast<int>(value);
    }

    std::string name_;
    std::vector<std::vector<std::string>> lines_;
};

}  // namespace

ActiveSetFile parse_active_set(const std::string& text, const std::string& name) { return Reader(text, name).read(); }

std::uint64_t theta_fnv1a64(const std::vector<double>& theta) {
    std::uint64_t h = 14695981039346656037ULL;
    for (const double v : theta) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, &v, sizeof bits);
        for (int b = 0; b < 8; ++b) {  // the little-endian byte order of numpy's "<f8", on any host
            h ^= (bits >> (8 * b)) & 0xFFu;
            h *= 1099511628211ULL;
        }
    }
    return h;
}

}  // namespace mtpfit

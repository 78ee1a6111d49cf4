#include "mtp_file.hpp"

#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>

namespace mtpfit {

namespace {

// The limits of python/mtpfit/potential/mtp_file.py: far above any published potential, far below a count that
// would exhaust memory (a corrupt file, not a potential).
constexpr int kMaxSpecies = 128, kMaxRadialFuncs = 32, kMaxRadialBasisSize = 32, kMaxMoments = 100000,
              kMaxProducts = 1000000, kMaxDegree = 64;
constexpr double kMaxAbsValue = 1e100;
const char* const kElementsTag = "elements:";

std::string trim(const std::string& s) {
    const auto begin = s.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos) return "";
    return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

struct Field {
    std::string value;
    int line;
};

class Reader {
public:
    Reader(const std::string& text, const std::string& name) : name_(name), lines_(text_lines(text)) {}

    MtpFile read() {
        scan();
        MtpFile out;
        out.basis = basis();
        out.elements = elements(out.basis->species_count);
        out.theta = theta(*out.basis);
        return out;
    }

private:
    [[noreturn]] void fail(const std::string& what, int line = 0) const {
        throw std::runtime_error(name_ + (line > 0 ? ":" + std::to_string(line) : "") + ": " + what);
    }

    static std::string content(const std::string& raw) { return trim(raw.substr(0, raw.find("<<<"))); }

    // "a-b", the header of one radial_coeffs block
    static bool species_pair(const std::string& line, int& a, int& b) {
        const auto dash = line.find('-');
        if (dash == std::string::npos) return false;
        const std::string left = trim(line.substr(0, dash)), right = trim(line.substr(dash + 1));
        auto digits = [](const std::string& s) {
            return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
        };
        if (!digits(left) || !digits(right)) return false;
        a = std::stoi(left);
        b = std::stoi(right);
        return true;
    }

    void scan() {
        if (lines_.empty() || content(lines_[0]) != "MTP") fail("an .mtp file starts with the line 'MTP'", 1);
        static const std::set<std::string> known = {
            "version", "potential_name", "potential_tag", "radial_basis_type", "species_count", "min_dist",
            "max_dist", "radial_basis_size", "radial_funcs_count", "alpha_moments_count", "alpha_index_basic_count",
            "alpha_index_basic", "alpha_index_times_count", "alpha_index_times", "alpha_scalar_moments",
            "alpha_moment_mapping", "species_coeffs", "moment_coeffs"};
        std::vector<Field>* rows = nullptr;  // the radial block being read
        for (std::size_t k = 1; k < lines_.size(); ++k) {
            const int number = static_cast<int>(k) + 1;
            const std::string line = content(lines_[k]);
            if (line.empty() || line[0] == '#') continue;  // blank, or MLIP-3's trailer
            int a = 0, b = 0;
            const auto eq = line.find('=');
            if (eq != std::string::npos) {
                rows = nullptr;
                const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
                if (key == "scaling") {  // a top-level and a basis-level value multiply (MTP_SPEC §2)
                    scalings_.push_back({value, number});
                } else if (!known.count(key)) {
                    fail("unknown field '" + key.substr(0, 40) + "'", number);
                } else if (fields_.count(key)) {
                    fail("'" + key + "' given twice (first on line " + std::to_string(fields_[key].line) + ")",
                         number);
                } else {
                    fields_[key] = {value, number};
                }
            } else if (line == "radial_coeffs") {
                rows = nullptr;
            } else if (species_pair(line, a, b)) {
                if (radial_.count({a, b})) fail("radial_coeffs block " + line + " given twice", number);
                radial_line_[{a, b}] = number;
                rows = &radial_[{a, b}];
            } else if (line[0] == '{' && rows) {
                rows->push_back({line, number});
            } else {
                fail("cannot read '" + line.substr(0, 60) + "'", number);
            }
        }
    }

    const Field& field(const std::string& key) const {
        const auto it = fields_.find(key);
        if (it == fields_.end()) fail("missing field '" + key + "'");
        return it->second;
    }

    double real(const std::string& token, int line, const std::string& what) const {
        std::string t = trim(token);
        const char* begin = t.c_str() + (!t.empty() && t[0] == '+');
        double value = 0.0;
        const auto res = std::from_chars(begin, t.c_str() + t.size(), value);
        if (t.empty() || res.ec != std::errc() || res.ptr != t.c_str() + t.size())
            fail(what + ": '" + t.substr(0, 40) + "' is not a number", line);
        if (!std::isfinite(value) || std::fabs(value) > kMaxAbsValue)
            fail(what + ": " + t + " is not finite or beyond ±1e100", line);
        return value;
    }

    int integer(const std::string& token, int line, const std::string& what, long low, long high) const {
        const double value = real(token, line, what);
        if (value != std::floor(value)) fail(what + ": '" + trim(token) + "' is not an integer", line);
        if (value < low || value > high)
            fail(what + ": " + trim(token) + " is out of range " + std::to_string(low) + "…" + std::to_string(high),
                 line);
        return static_cast<int>(value);
    }

    int count(const std::string& key, long low, long high) const {
        const Field& f = field(key);
        return integer(f.value, f.line, key, low, high);
    }

    // "{x, y, …}" → its tokens
    std::vector<std::string> tokens(const std::string& text, int line, const std::string& what) const {
        const std::string t = trim(text);
        if (t.size() < 2 || t.front() != '{' || t.back() != '}' || t.find_first_of("{}", 1) != t.size() - 1)
            fail(what + ": expected {x, y, …}, found '" + t.substr(0, 40) + "'", line);
        std::vector<std::string> out;
        const std::string inner = trim(t.substr(1, t.size() - 2));
        if (inner.empty()) return out;
        std::size_t start = 0;
        while (true) {
            const auto comma = inner.find(',', start);
            out.push_back(inner.substr(start, comma - start));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        return out;
    }

    std::vector<double> reals(const std::string& text, int line, const std::string& what) const {
        std::vector<double> out;
        for (const auto& t : tokens(text, line, what)) out.push_back(real(t, line, what));
        return out;
    }

    // "{{a, b, …}, …}" with one integer range per column
    std::vector<std::vector<int>> index_rows(const std::string& key,
                                             const std::vector<std::pair<long, long>>& ranges) const {
        std::vector<std::vector<int>> rows;
        const auto it = fields_.find(key);
        if (it == fields_.end()) return rows;
        const std::string t = trim(it->second.value);
        const int line = it->second.line;
        if (t.size() < 2 || t.front() != '{' || t.back() != '}')
            fail(key + ": expected {{…}, {…}, …}, found '" + t.substr(0, 40) + "'", line);
        const std::string inner = t.substr(1, t.size() - 2);
        std::size_t pos = 0;
        bool expect_group = true;
        while (true) {
            pos = inner.find_first_not_of(" \t", pos);
            if (pos == std::string::npos) break;
            if (expect_group) {
                const auto close = inner.find('}', pos);
                if (inner[pos] != '{' || close == std::string::npos)
                    fail(key + ": expected {{…}, {…}, …}", line);
                const auto values = tokens(inner.substr(pos, close - pos + 1), line, key);
                const std::string entry = key + " entry " + std::to_string(rows.size());
                if (values.size() != ranges.size())
                    fail(entry + " has " + std::to_string(values.size()) + " values, expected " +
                         std::to_string(ranges.size()), line);
                std::vector<int> row;
                for (std::size_t c = 0; c < values.size(); ++c)
                    row.push_back(integer(values[c], line, entry, ranges[c].first, ranges[c].second));
                rows.push_back(row);
                pos = close + 1;
            } else if (inner[pos] == ',') {
                ++pos;
            } else {
                fail(key + ": expected ',' between entries", line);
            }
            expect_group = !expect_group;
        }
        if (!rows.empty() && expect_group) fail(key + ": trailing ','", line);
        return rows;
    }

    void check_count(const std::string& key, std::size_t actual) const {
        const auto it = fields_.find(key);
        if (it != fields_.end() && count(key, 0, kMaxProducts) != static_cast<long>(actual))
            fail(key + " = " + trim(it->second.value) + " but " + std::to_string(actual) + " entries follow",
                 it->second.line);
    }

    std::unique_ptr<Basis> basis() const {
        const auto kind = fields_.find("radial_basis_type");
        if (kind != fields_.end() && kind->second.value != "RBChebyshev")
            fail("only RBChebyshev is supported, found '" + kind->second.value.substr(0, 40) + "'", kind->second.line);
        const int S = count("species_count", 1, kMaxSpecies);
        const double rmin = real(field("min_dist").value, field("min_dist").line, "min_dist");
        const double rmax = real(field("max_dist").value, field("max_dist").line, "max_dist");
        if (!(0.0 <= rmin && rmin < rmax)) fail("need 0 <= min_dist < max_dist", field("max_dist").line);
        const int R = count("radial_basis_size", 2, kMaxRadialBasisSize);
        const int K = count("radial_funcs_count", 1, kMaxRadialFuncs);
        const int M = count("alpha_moments_count", 1, kMaxMoments);
        field("alpha_index_basic");
        const auto basic_rows = index_rows("alpha_index_basic", {{0, K - 1}, {0, kMaxDegree}, {0, kMaxDegree},
                                                                 {0, kMaxDegree}});
        check_count("alpha_index_basic_count", basic_rows.size());
        const long n_basic = static_cast<long>(basic_rows.size());
        if (n_basic < 1 || n_basic > M)
            fail(std::to_string(n_basic) + " basic moments for alpha_moments_count = " + std::to_string(M),
                 field("alpha_index_basic").line);
        const auto times_rows = index_rows("alpha_index_times", {{0, M - 1}, {0, M - 1},
                                                                 {-2147483647L, 2147483647L}, {n_basic, M - 1}});
        check_count("alpha_index_times_count", times_rows.size());
        if (times_rows.size() > static_cast<std::size_t>(kMaxProducts)) fail("too many alpha_index_times entries");
        const Field& map_field = field("alpha_moment_mapping");
        std::vector<int> mapping;
        for (const auto& t : tokens(map_field.value, map_field.line, "alpha_moment_mapping"))
            mapping.push_back(integer(t, map_field.line, "alpha_moment_mapping", 0, M - 1));
        if (mapping.empty()) fail("alpha_moment_mapping is empty: the potential has no basis function", map_field.line);
        check_count("alpha_scalar_moments", mapping.size());
        std::vector<char> written(M, 0);
        for (long k = 0; k < n_basic; ++k) written[k] = 1;
        for (const auto& r : times_rows) written[r[3]] = 1;
        for (int k = 0; k < M; ++k)
            if (!written[k]) fail("moment " + std::to_string(k) + " is neither basic nor written by alpha_index_times");
        double scaling = 1.0;
        for (const auto& s : scalings_) {
            scaling *= real(s.value, s.line, "scaling");
            if (!(scaling > 0.0 && scaling <= kMaxAbsValue)) fail("scaling must be positive", s.line);
        }
        std::vector<BasicMoment> basic;
        for (const auto& r : basic_rows) {
            if (r[1] + r[2] + r[3] > kMaxDegree) fail("a basic moment has p + q + w > 64");
            basic.push_back({r[0], r[1], r[2], r[3]});
        }
        std::vector<MomentProduct> products;
        for (const auto& r : times_rows) products.push_back({r[0], r[1], r[2], r[3]});
        try {
            return std::make_unique<Basis>(S, K, R, rmin, rmax, scaling, M, std::move(basic), std::move(products),
                                           std::move(mapping));
        } catch (const std::invalid_argument& err) {
            fail(err.what());
        }
    }

    std::vector<std::string> elements(int S) const {
        std::vector<std::string> out;
        const auto it = fields_.find("potential_tag");
        if (it == fields_.end() || it->second.value.rfind(kElementsTag, 0) != 0) return out;
        const std::string list = it->second.value.substr(std::string(kElementsTag).size());
        std::size_t start = 0;
        while (true) {
            const auto comma = list.find(',', start);
            out.push_back(trim(list.substr(start, comma - start)));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        const std::set<std::string> distinct(out.begin(), out.end());
        if (static_cast<int>(out.size()) != S || static_cast<int>(distinct.size()) != S || distinct.count(""))
            fail("potential_tag '" + it->second.value.substr(0, 80) + "' must name " + std::to_string(S) +
                 " distinct elements (species_count = " + std::to_string(S) + ")", it->second.line);
        return out;
    }

    std::vector<double> theta(const Basis& basis) const {
        const int S = basis.species_count, K = basis.radial_funcs_count, R = basis.radial_basis_size;
        if (radial_.empty() || !fields_.count("species_coeffs") || !fields_.count("moment_coeffs"))
            fail("an untrained potential (no radial_coeffs, species_coeffs or moment_coeffs): train it first");
        std::vector<double> theta;
        theta.reserve(basis.n_params());
        for (const auto& block : radial_line_)
            if (block.first.first >= S || block.first.second >= S)
                fail("radial_coeffs block " + std::to_string(block.first.first) + "-" +
                     std::to_string(block.first.second) + " for species_count = " + std::to_string(S), block.second);
        for (int a = 0; a < S; ++a)
            for (int b = 0; b < S; ++b) {
                const std::string what = "radial_coeffs block " + std::to_string(a) + "-" + std::to_string(b);
                const auto it = radial_.find({a, b});
                if (it == radial_.end()) fail("missing " + what);
                if (static_cast<int>(it->second.size()) != K)
                    fail(what + " must have " + std::to_string(K) + " rows of " + std::to_string(R) + " numbers",
                         radial_line_.at({a, b}));
                for (const auto& row : it->second) {
                    const auto values = reals(row.value, row.line, what);
                    if (static_cast<int>(values.size()) != R)
                        fail(what + " must have rows of " + std::to_string(R) + " numbers", row.line);
                    theta.insert(theta.end(), values.begin(), values.end());
                }
            }
        for (const auto& [key, n] : {std::pair<std::string, std::size_t>{"species_coeffs", S},
                                     {"moment_coeffs", basis.mapping.size()}}) {
            const Field& f = field(key);
            const auto values = reals(f.value, f.line, key);
            if (values.size() != n)
                fail(std::to_string(values.size()) + " " + key + " for " + std::to_string(n) + " expected", f.line);
            theta.insert(theta.end(), values.begin(), values.end());
        }
        return theta;
    }

    std::string name_;
    std::vector<std::string> lines_;
    std::map<std::string, Field> fields_;
    std::vector<Field> scalings_;
    std::map<std::pair<int, int>, std::vector<Field>> radial_;
    std::map<std::pair<int, int>, int> radial_line_;
};

}  // namespace

std::vector<std::string> text_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

MtpFile parse_mtp(const std::string& text, const std::string& name) { return Reader(text, name).read(); }

}  // namespace mtpfit

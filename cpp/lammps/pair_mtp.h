// LAMMPS pair style `mtp`: Moment Tensor Potentials evaluated by mtpfit's C++ core (SiteKernel).
//
//   pair_style mtp FILE.mtp [extrapolation FILE.als.txt [every N]]
//   pair_coeff * * El1 El2 …     (one entry per LAMMPS atom type)
//
// Each entry names the potential's species of that LAMMPS type: an element symbol of the file's
// `potential_tag = elements:…`, or, for a file that names no elements, a type index 0 … S−1.
//
// Extrapolation grade (`extrapolation`, a neighbourhood-mode active set written by mtpfit's
// ActiveSet.write_lammps / `mtpfit lammps --extrapolation POT.mtp`): on steps that are multiples of N (default 1),
// and on the steps a `fix pair … mtp gamma 1` asks for, every local atom gets γ_i = max_j |(b_i A⁻¹)_j|, b_i its
// row [species one-hot | basis functions B_α(i)] in the set's columns: mtpfit.active.atom_grades. The moments
// B_α(i) come from the energy's own forward pass, so a graded step adds only the n × n product per atom. Per-atom
// γ is `extract_peratom("gamma")` (for fix pair), the largest γ over all atoms and ranks is pvector[0]
// (`compute ID all pair mtp` → c_ID[1]); both are 0 on steps not graded.
// Scheme: a full neighbour list at the potential's cutoff; the site energies V_i of the local atoms and their
// pair gradients g_ij = ∂V_i/∂r_ij come from the core, one SiteKernel per OpenMP thread; then F_i += g_ij,
// F_j −= g_ij (MTP_SPEC §5). A neighbour j may be a ghost: with `newton on` LAMMPS sums ghost forces into their
// owners; with `newton off` the style does that reverse communication itself (its own buffer), so both settings
// give the same forces without a wider ghost region or ghost site energies. The virial of site i is
// W_i = −Σ_j r_ij ⊗ g_ij (symmetric, as V_i is rotation invariant); W_i is the per-atom virial of atom i and
// Σ_i W_i the global virial (= mtpfit's PlusStress), so energies and virials stay per site, local to the rank.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pair.h"

namespace mtpfit {
struct MtpFile;
struct ActiveSetFile;
class SiteKernel;
}  // namespace mtpfit

namespace LAMMPS_NS {

class PairMTP : public Pair {
public:
    PairMTP(class LAMMPS*);
    ~PairMTP() override;

    void compute(int eflag, int vflag) override;
    void settings(int narg, char** arg) override;
    void coeff(int narg, char** arg) override;
    void init_style() override;
    double init_one(int i, int j) override;
    int pack_reverse_comm(int n, int first, double* buf) override;
    void unpack_reverse_comm(int n, int* list, double* buf) override;
    double memory_usage() override;
    void* extract(const char* name, int& dim) override;
    void* extract_peratom(const char* name, int& ncol) override;

private:
    void allocate();
    void read_active_set(const std::string& path);
    void build_neighbourhoods();
    void site_gradients(bool graded);

    std::string path_;
    std::unique_ptr<mtpfit::MtpFile> potential_;
    std::vector<int> species_of_type_;  // [LAMMPS type 1 … ntypes] → species index, [0] unused
    std::vector<std::unique_ptr<mtpfit::SiteKernel>> kernels_;  // one per OpenMP thread

    // per call: sites 0 … inum−1 are the list's atoms ilist[…]; pairs of site s are offsets_[s] … offsets_[s+1]−1
    std::vector<int> types_, offsets_, neighbors_, partner_;  // partner_: LAMMPS index of each pair's neighbour
    std::vector<double> vectors_, site_energy_, gradients_;
    std::vector<double> ghost_force_;  // newton off: forces on neighbours, 3 per local + ghost atom

    // extrapolation grade; active_ is null without the `extrapolation` keyword
    std::unique_ptr<mtpfit::ActiveSetFile> active_;
    std::vector<int> column_source_;  // per active-set column: its moment index, or −1 − s for species s's one-hot
    int every_ = 1;
    int gamma_flag_ = 0;              // set by fix pair (trigger "gamma_flag") for the steps it samples
    std::vector<double> gamma_;       // per local atom (LAMMPS index), atom->nmax long
    std::vector<std::vector<double>> grade_rows_;  // per OpenMP thread: b_i A⁻¹
    double gamma_max_ = 0.0;          // pvector: the global max on rank 0, 0 elsewhere (compute pair sums ranks)
};

}  // namespace LAMMPS_NS

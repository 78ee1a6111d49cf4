// LAMMPS pair style `mtp`: Moment Tensor Potentials evaluated by mtpfit's C++ core (SiteKernel).
//
//   pair_style mtp FILE.mtp
//   pair_coeff * * El1 El2 …     (one entry per LAMMPS atom type)
//
// Each entry names the potential's species of that LAMMPS type: an element symbol of the file's
// `potential_tag = elements:…`, or, for a file that names no elements, a type index 0 … S−1.
//
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

private:
    void allocate();
    void build_neighbourhoods();
    void site_gradients();

    std::string path_;
    std::unique_ptr<mtpfit::MtpFile> potential_;
    std::vector<int> species_of_type_;  // [LAMMPS type 1 … ntypes] → species index, [0] unused
    std::vector<std::unique_ptr<mtpfit::SiteKernel>> kernels_;  // one per OpenMP thread

    // per call: sites 0 … inum−1 are the list's atoms ilist[…]; pairs of site s are offsets_[s] … offsets_[s+1]−1
    std::vector<int> types_, offsets_, neighbors_, partner_;  // partner_: LAMMPS index of each pair's neighbour
    std::vector<double> vectors_, site_energy_, gradients_;
    std::vector<double> ghost_force_;  // newton off: forces on neighbours, 3 per local + ghost atom
};

}  // namespace LAMMPS_NS

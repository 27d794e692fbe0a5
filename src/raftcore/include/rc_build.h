/* How the extensions were built: setup.py defines RAFTCORE_PROFILE_GUIDED=1 when it compiles
 * them with the counts of a training run (RAFTCORE_PGO=1). */
#ifndef RC_BUILD_H
#define RC_BUILD_H
#ifndef RAFTCORE_PROFILE_GUIDED
#define RAFTCORE_PROFILE_GUIDED 0
#endif
#endif

// proto/core.pb.h has a field named `sigmask`, which glibc's <signal.h> defines as a deprecated
// function-like macro; the generated accessors do not compile once that macro is seen. Include
// the generated header through this one, which drops the macro first.
#pragma once

#include <signal.h>
#undef sigmask
#include "proto/core.pb.h"

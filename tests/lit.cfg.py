# lit configuration shared by tests/lit (IR and pass tests) and tests/errors (bad-input tests).
# Substitutions:
#   %loom        the loom binary under test
#   %loom-err    runs loom and passes only if it exits with status 1 (a user error, not a crash)
import os
import lit.formats

config.name = "loom"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".loom", ".lir", ".test"]
config.excludes = ["Inputs", "lit.cfg.py", "lit.local.cfg"]

loom = lit_config.params["loom"]
python = lit_config.params.get("python", "python3")
llvm_bin = lit_config.params.get("llvm_bin", "/usr/lib/llvm-19/bin")
here = os.path.dirname(os.path.abspath(__file__))
tools = os.path.join(here, "tools")
models = os.path.join(os.path.dirname(here), "models")

config.environment["PATH"] = os.pathsep.join([llvm_bin, os.environ.get("PATH", "")])
# Under sanitizers a report must abort (a signal), so that neither `not` nor %loom-err accepts it.
config.environment["ASAN_OPTIONS"] = "abort_on_error=1:detect_leaks=1"
config.environment["UBSAN_OPTIONS"] = "abort_on_error=1:halt_on_error=1:print_stacktrace=1"
config.substitutions.append(("%loom-err", f"{python} {tools}/expect_exit.py 1 {loom}"))
config.substitutions.append(("%loom", loom))
config.substitutions.append(("%models", models))
config.substitutions.append(("%python", python))
config.substitutions.append(("%tools", tools))
# %mpirun: a launcher for cluster executables' jobs (feature "mpirun" where one is installed);
# its ranks without LeakSanitizer, as the mesh ctests run them (OpenMPI's own allocations at exit)
import shutil
mpiexec = shutil.which("mpiexec")
if mpiexec:
    config.available_features.add("mpirun")
    config.substitutions.append(("%mpirun", f"env ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 {mpiexec} "
                                            "--allow-run-as-root --oversubscribe --bind-to none"))

# Module moves of the package-per-concern layout (docs/architecture.md, "Where the code lives").
# Reapply to code written against the old layout:
#   git grep -lE 'processors\.(signal|eligibility|flags|bench)|rtm\.(cli|mainjob|contract\.bench)|ingest\.bench|device_adapters\.(hub\.bench|simulated)|processors/|rtm/|ingest/bench|device_adapters/' \
#     | xargs sed -i -E -f tools/refactor/module_moves.sed
# Then fix by hand any `from <old package> import a, <moved module>` that names a module which moved
# to a different package than its siblings (e.g. `from motion import analyze_exercise, synth`).
# Files that left processors/signal for another package (simulation/synth*.py, tools/validation/*.py,
# tools/bench/signal_processing.py) import the library absolutely; for a relative import added there:
#   sed -i -E 's/^from \.(activity|analysis|daydata|errors|exercises|filters|fusion|gait|quat|recording|reps|rom|steps|wear) import/from motion.\1 import/' \
#     simulation/synth*.py tools/validation/*.py tools/bench/signal_processing.py
# processors.eligibility.localtime was a re-export of rtm.localtime and is gone.
# Specific rules come before the general ones; \b keeps synth from matching synth_reps.

# `from package import module` forms whose module left its package
s/from processors\.signal import (bench)$/from tools.bench import signal_processing as \1/
s/from processors\.signal import (validate, validate_steps|validate|validate_steps|datasets)$/from tools.validation import \1/
s/from processors\.signal import (synth_reps as hard|synth_reps|synth_walks|synth)$/from simulation import \1/
s/from processors\.eligibility import bench$/from tools.bench import eligibility as bench/
s/from processors\.eligibility import localtime$/from rtm import localtime/

# the numpy motion library and what leaves it: generators, validation, dataset loaders, benchmark
s/\bprocessors\.signal\.bench\b/tools.bench.signal_processing/g
s/\bprocessors\.signal\.datasets\b/tools.validation.datasets/g
s/\bprocessors\.signal\.validate_steps\b/tools.validation.validate_steps/g
s/\bprocessors\.signal\.validate\b/tools.validation.validate/g
s/\bprocessors\.signal\.synth_reps\b/simulation.synth_reps/g
s/\bprocessors\.signal\.synth_walks\b/simulation.synth_walks/g
s/\bprocessors\.signal\.synth\b/simulation.synth/g
s/\bprocessors\.signal\b/motion/g
s#\bprocessors/signal/bench\.py#tools/bench/signal_processing.py#g
s#\bprocessors/signal/(datasets|validate_steps|validate)\.py#tools/validation/\1.py#g
s#\bprocessors/signal/(synth_reps|synth_walks|synth)\.py#simulation/\1.py#g
s#\bprocessors/signal\b#motion#g

# eligibility and billing
s/\bprocessors\.eligibility\.bench\b/tools.bench.eligibility/g
s/\bprocessors\.eligibility\.localtime\b/rtm.localtime/g
s/\bprocessors\.eligibility\b/eligibility/g
s#\bprocessors/eligibility/bench\.py#tools/bench/eligibility.py#g
s#\bprocessors/eligibility\b#eligibility#g

# trend flags
s/\bprocessors\.flags\b/flags/g
s#\bprocessors/flags\b#flags#g

# benchmarks of the other parts
s/\bprocessors\.bench\b/tools.bench.pipeline/g
s#\bprocessors/bench\.py#tools/bench/pipeline.py#g
s/\bingest\.bench\b/tools.bench.ingest/g
s#\bingest/bench\.py#tools/bench/ingest.py#g
s/\bdevice_adapters\.hub\.bench\b/tools.bench.hub/g
s#\bdevice_adapters/hub/bench\.py#tools/bench/hub.py#g
s/\brtm\.contract\.bench\b/tools.bench.encoding/g
s#\brtm/contract/bench\.py#tools/bench/encoding.py#g

# the simulated fleet joins the generators
s/\bdevice_adapters\.simulated\b/simulation/g
s#\bdevice_adapters/simulated\b#simulation#g

# the command line and the main job
s/\brtm\.cli\b/cli.main/g
s#\brtm/cli\.py#cli/main.py#g
s/\brtm\.mainjob\b/cli.mainjob/g
s#\brtm/mainjob\.py#cli/mainjob.py#g

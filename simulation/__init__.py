"""Made-up data with known truth, for the main job, tests, benchmarks and validation.

- `synth`, `synth_reps`, `synth_walks`: seedable IMU and walking generators (on top of `motion`);
- `cohort`: a simulated device fleet, canonical events as real adapters would emit them;
- `seed`: the simulated clinic (patients, episodes, devices, prescriptions, therapist time).

Nothing in a production package imports this one (docs/architecture.md).
"""

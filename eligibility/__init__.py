"""RTM billing eligibility: payer policies, the pure engine, its database layer, therapist time,
billing summaries/exports and release. See docs/eligibility.md.

What other parts call:
- nothing, to have patients recomputed: triggers on the input tables mark them dirty;
  `store.mark_dirty(conn, patient_ids, reason)` for changes the database cannot see;
- `store.recompute_dirty(conn, as_of)` / `store.recompute_patients(conn, ids, as_of)`;
- `engine.compute_patient(inputs, policies, as_of)` for the pure computation;
- `billing.summaries / export / release`, `timeentries.*`, `api.eligibility_router`, `cli.register`.
"""

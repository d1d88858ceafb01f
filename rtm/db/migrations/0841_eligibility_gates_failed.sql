-- The names of the gates that failed, beside the explanation: the billing view lists a month's
-- results with why (about 1,000 rows for 500 patients) and should not parse every explanation
-- document to find them. The eligibility writer fills it with each row (eligibility/store.py);
-- rows written before are filled here from their stored explanations.
alter table eligibility_results add column gates_failed text[];
update eligibility_results r
   set gates_failed = array(select g->>'name' from json_array_elements(r.explanation->'gates') g
                             where not (g->>'passed')::boolean);
alter table eligibility_results alter column gates_failed set not null;

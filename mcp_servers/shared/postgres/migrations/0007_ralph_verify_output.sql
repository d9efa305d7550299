-- Ralph shows its work: each iteration keeps its verify command's result (output capped by the worker), and a
-- task says whether the next iteration's prompt carries the previous verify output.

ALTER TABLE ralph_iterations
    ADD COLUMN verify_exit_status integer NULL,
    ADD COLUMN verify_output      text NULL;

ALTER TABLE ralph_tasks
    ADD COLUMN feed_verify_output boolean NOT NULL DEFAULT false;

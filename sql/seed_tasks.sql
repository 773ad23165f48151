-- name: seed_tasks :execrows
-- Insert %(count)s sample tasks in one statement; with %(if_empty)s true, only into an empty table.
insert into tasks (
    title,
    description,
    done
)
select
    (array[
        'Write the README',
        'Review the pull request',
        'Rotate the database password',
        'Plan the sprint',
        'Fix the flaky test',
        'Сделать домашнее задание',
        'Update the dependencies',
        'Back up the database'
    ])[1 + (n - 1) %% 8] || ' #' || n,
    'Sample task ' || n || ', inserted by python -m svc seed.',
    n %% 3 = 0
from generate_series(1, %(count)s) as n
where not %(if_empty)s
    or not exists (select from tasks)

#!/usr/bin/env bash
# An entrypoint for PrairieLearn kept in the course (serverFilesCourse/failfast/run.sh): the
# image's /usr/local/bin/failfast-prairielearn, for courses that name their entrypoint in their
# own repository. In a question's info.json:
#   "serverFilesCourse": ["failfast/"], "entrypoint": "/grade/serverFilesCourse/failfast/run.sh"
# failfast-course.yaml beside this script gives points and visibility for every question.
if [ -x /usr/local/bin/failfast-prairielearn ]; then
  exec /usr/local/bin/failfast-prairielearn "$@"
fi
# Not the failfast autograder image: say so, without using up the learner's attempt.
mkdir -p /grade/results
printf '%s\n' '{"gradable": false, "score": 0.0, "message": "failfast could not grade this submission: the question runs in an image without failfast (see externalGradingOptions.image). This is not a verdict on your code, and your attempt is not used up.", "format_errors": ["the grading image has no /usr/local/bin/failfast-prairielearn"], "tests": []}' >/grade/results/results.json

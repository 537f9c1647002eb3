// What GitHub Classroom's autograding-grading-reporter does with runner results, transcribed
// for the tests from its source (classroom-resources/autograding-grading-reporter, src/main.js
// parseRunnerResults, src/notify-classroom.js NotifyClassroom, src/aggregate-results.js
// getTestScore, src/console-results.js). The reporter is an action, not a published package, so
// its arithmetic runs here in the same JavaScript engine: Node's numbers and their toString.
//
// Input: the environment, exactly as the workflow hands it to the reporter:
//   RUNNERS=a,b   and for each runner  <RUNNER>_RESULTS=<base64 of the runner's JSON>
// Output (stdout, JSON): what the reporter would record and show.
"use strict";

function parseRunnerResults(runners) {
  // main.js: a runner's result is base64 JSON in the environment variable <RUNNER>_RESULTS.
  return runners.split(",").map((runner) => {
    const encoded = process.env[`${runner.trim().toUpperCase()}_RESULTS`];
    const json = Buffer.from(encoded, "base64").toString("utf-8");
    return { runner: runner.trim(), results: JSON.parse(json) };
  });
}

function notifyClassroomText(runnerResults) {
  // notify-classroom.js: runners with a falsy max_score are skipped; the points are the sum of
  // every test's score, in order; Classroom gets `Points ${totalScore}/${maxScore}`.
  const { totalScore, maxScore } = runnerResults.reduce(
    (acc, { results }) => {
      if (!results.max_score) return acc;
      acc.maxScore += results.max_score;
      results.tests.forEach(({ score }) => {
        acc.totalScore += score;
      });
      return acc;
    },
    { totalScore: 0, maxScore: 0 },
  );
  return { sent: maxScore ? `Points ${totalScore}/${maxScore}` : null };
}

function getTestScore(results) {
  // aggregate-results.js: the console table's "Test Score" counts passes, not points.
  const passed = results.tests.reduce((acc, { status }) => (status === "pass" ? acc + 1 : acc), 0);
  return (passed / results.tests.length) * (results.max_score || 0 || 1);
}

const runnerResults = parseRunnerResults(process.env.RUNNERS);
const failed = runnerResults.some((r) => r.results.status === "fail");
const errored = runnerResults.some((r) => r.results.status === "error");
process.stdout.write(
  JSON.stringify({
    ...notifyClassroomText(runnerResults),
    table: runnerResults.map(({ results }) => `${getTestScore(results)}`),
    // main.js: setFailed("Some tests failed.") for a fail, else "Some tests errored."
    step: failed ? "Some tests failed." : errored ? "Some tests errored." : "passed",
    messages: runnerResults.flatMap(({ results }) => results.tests.map((t) => t.message)),
  }),
);

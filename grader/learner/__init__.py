"""The learner's repo, read: the manifest, the budget table, the nginx config, any file.

Owns: ``repo`` (the repo and its ``failfast.yaml``), ``budgets`` (``budgets.yaml``), ``nginxconf``
(``nginx/nginx.conf`` judged the way nginx reads it), with ``nginxread`` (the files, includes
spliced), ``nginxtime`` (nginx's time units) and ``nginxlocations`` (which location serves a
request) and ``nginxroute`` (the upstream rewired for the local backend), ``yamlfile`` (YAML
validated against the shipped JSON Schemas) and ``learnerfile`` (bounded reads of a learner's file:
no links out of the repo, no devices, no giant files).

May import: the model only.
"""

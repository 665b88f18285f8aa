"""What keeps teams that share a deployment from reaching past their own data: endpoint URL
policy (:mod:`cgd.security.urls`) and bounds on what a request may cost
(:mod:`cgd.security.limits`). See docs/security.md."""

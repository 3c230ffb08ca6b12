"""Methods-text templates and references; installed as the ``bids_glm.boilerplate`` package."""

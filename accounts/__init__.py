"""People: the user model with an approver tier, roles as groups, login and logout."""

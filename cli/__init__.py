"""The `rtm` command line and the main job: the top of the dependency layers."""

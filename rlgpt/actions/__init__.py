"""What a code action is and where it runs: the library, the options env, the sandbox."""

"""Classification jobs: submit, enqueue, poll."""

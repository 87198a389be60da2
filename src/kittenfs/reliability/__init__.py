"""The reliability suite: a workload that records its history, a nemesis that injects faults
while it runs, and a checker that judges the history against what the cluster holds after.
``kittenfs nemesis`` runs it (docs/reliability.md)."""

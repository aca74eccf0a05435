"""vireo-chaos: seeded random fault schedules against the cluster's invariants.

schedule  what to break and when, from a seed alone (pure)
nemesis   breaks and mends a lab (vireo-lab, signals) and keeps a model of it
workload  what users do meanwhile (migrations, stop/start, create/delete)
observer  watches every host independently of vireod and checks invariants 1-5
report    the timeline, the tables and the violation dump
"""

"""Adversarial functional tests: attacker peers against a real victim node.

The victim and an honest miner are ``poai node run`` processes on distinct
127.0.0.x addresses; the attacker is this test process, speaking the wire
protocol from 127.0.0.100 and up.  Modules:

* procs   -- node processes, their JSON-RPC, CPU time and logs;
* netio   -- an event-loop thread, raw attacker peers, the victim-miner link;
* mirror  -- a local copy of the victim's chain to craft blocks from;
* harness -- the per-module fixture, one ``Case`` per attack and the report.
"""

"""Simulated devices, scenarios and load: see README.md here. A simulator speaks only the MQTT
contract (core.contract). Entry points: simulators.fleet.start_fleet / Fleet,
simulators.scenario.load_scenario / list_scenarios, simulators.load.LoadGenerator."""

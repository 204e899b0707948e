//! In-process switch and hub (MAC+VLAN learning table, port set, aging): see the switch issue.

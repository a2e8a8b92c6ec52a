//! Mesos data model shared by master, agent and frameworks: resources, attributes, wire types.

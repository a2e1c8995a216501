// Makes a running Cassandra node read its TLS key and trust stores again (what `nodetool
// reloadssl` does), by attaching to its JVM: the local stack runs Cassandra from Maven jars,
// without nodetool or a JMX port. Run as `java ReloadSsl.java <pid>` (app.stack.control).
import com.sun.tools.attach.VirtualMachine;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class ReloadSsl {
    public static void main(String[] args) throws Exception {
        VirtualMachine vm = VirtualMachine.attach(args[0]);
        try {
            String address = vm.startLocalManagementAgent();
            try (JMXConnector jmx = JMXConnectorFactory.connect(new JMXServiceURL(address))) {
                jmx.getMBeanServerConnection().invoke(
                    new ObjectName("org.apache.cassandra.net:type=MessagingService"),
                    "reloadSslCertificates", new Object[0], new String[0]);
            }
        } finally {
            vm.detach();
        }
    }
}
